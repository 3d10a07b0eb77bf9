// Pack → inspect → unpack round trips on a real directory: ignore rules, symlinks, modes and determinism.
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EnjinError } from '../core/errors.ts';
import { inspectPackage } from './inspect.ts';
import { packDirectory } from './pack.ts';
import { unpackPackage } from './unpack.ts';

let work: string;
let app: string;
let socketServer: Server | null = null;

async function put(rel: string, content: string, mode?: number): Promise<void> {
  const file = join(app, rel);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
  if (mode !== undefined) await chmod(file, mode);
}

/** Every path under `dir`, directories with a trailing slash, symlinks as "path -> target". */
async function tree(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = await lstat(join(dir, path));
    if (st.isSymbolicLink()) out.push(`${path} -> ${await readlink(join(dir, path))}`);
    else if (st.isDirectory()) out.push(`${path}/`, ...(await tree(dir, path)));
    else out.push(path);
  }
  return out;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'enjin-pack-'));
  app = join(work, 'app');
  await put('.gitignore', '# build output\n*.log\nbuild/\n!keep.log\n/secret.txt\n');
  await put('.enjinignore', 'private/\n!build/\n');
  await put('enjin.yaml', 'project: hello\nservices:\n  web:\n    command: node server.js\n');
  await put('Procfile', 'web: node server.js\n');
  await put('server.js', 'console.log("hi")\n', 0o664);
  await put('run.sh', '#!/bin/sh\necho hi\n', 0o775);
  await put('debug.log', 'ignored by the root .gitignore');
  await put('keep.log', 'negated back in');
  await put('secret.txt', 'anchored at the root');
  await put('build/out.js', 'git ignores build/, .enjinignore ships it');
  await put('private/key', 'left out by .enjinignore');
  await put('.git/HEAD', 'never packed');
  await put('.enjin/state.json', 'never packed');
  await put('node_modules/left-pad/index.js', 'shipped: node_modules is not excluded by default');
  await put('lib/.gitignore', 'tmp/\n*.gen.js\n/local.txt\n');
  await put('lib/a.js', 'a');
  await put('lib/b.gen.js', 'ignored by lib/.gitignore');
  await put('lib/local.txt', 'anchored: ignored');
  await put('lib/secret.txt', 'not anchored here: the root rule is /secret.txt');
  await put('lib/sub/local.txt', 'anchored pattern does not reach here');
  await put('lib/sub/c.gen.js', 'unanchored pattern reaches here');
  await put('lib/tmp/x', 'ignored directory');
  await put(`deep/${'d'.repeat(60)}/${'e'.repeat(60)}/long-name-ü.txt`, 'long and non-ASCII path, needs a pax record');
  await mkdir(join(app, 'empty'));
  await symlink('lib', join(app, 'current'));
  await symlink('../server.js', join(app, 'lib/up'));
  await symlink('../../etc', join(app, 'outside'));
  await symlink('/etc/passwd', join(app, 'absolute'));
  await symlink('current/../../etc', join(app, 'through'));
  socketServer = createServer();
  await new Promise<void>((res) => socketServer!.listen(join(app, 'app.sock'), res));
});

after(async () => {
  await new Promise<void>((res) => (socketServer ? socketServer.close(() => res()) : res()));
  await rm(work, { recursive: true, force: true });
});

const PACKED = [
  '.enjinignore',
  '.gitignore',
  'Procfile',
  'build/',
  'build/out.js',
  'current -> lib',
  'deep/',
  `deep/${'d'.repeat(60)}/`,
  `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/`,
  `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/long-name-ü.txt`,
  'empty/',
  'enjin.yaml',
  'keep.log',
  'lib/',
  'lib/.gitignore',
  'lib/a.js',
  'lib/secret.txt',
  'lib/sub/',
  'lib/sub/local.txt',
  'lib/up -> ../server.js',
  'node_modules/',
  'node_modules/left-pad/',
  'node_modules/left-pad/index.js',
  'run.sh',
  'server.js',
];

describe('packDirectory', () => {
  it('round trips through inspect and unpack, honouring ignore files', async () => {
    const packed = await packDirectory(app);
    assert.equal(packed.size, packed.tarball.length);
    assert.match(packed.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(
      packed.skipped.map((s) => s.path),
      ['app.sock', 'absolute', 'outside', 'through'],
    );
    assert.match(packed.skipped.find((s) => s.path === 'outside')!.reason, /points outside the package/);

    const info = await inspectPackage(packed.tarball);
    assert.equal(info.sha256, packed.sha256);
    assert.equal(info.files, packed.files);
    assert.equal(info.files, PACKED.filter((p) => !p.endsWith('/')).length);
    assert.equal(info.read('enjin.yaml'), 'project: hello\nservices:\n  web:\n    command: node server.js\n');
    assert.equal(info.read('Procfile'), 'web: node server.js\n');

    const file = join(work, 'pkg.tar.gz');
    await writeFile(file, packed.tarball);
    const dest = join(work, 'versions', 'v1');
    await unpackPackage(file, dest, packed.sha256.toUpperCase());
    assert.deepEqual(await tree(dest), PACKED);
    assert.equal(await readFile(join(dest, 'lib/up'), 'utf8'), 'console.log("hi")\n', 'the inner symlink resolves');
    assert.deepEqual(await readdir(join(work, 'versions')), ['v1'], 'no temporary directory is left behind');

    // Only the executable bit survives, normalized; nothing is group- or world-writable.
    assert.equal((await lstat(join(dest, 'run.sh'))).mode & 0o7777, 0o755);
    assert.equal((await lstat(join(dest, 'server.js'))).mode & 0o7777, 0o644);
    assert.equal((await lstat(join(dest, 'lib'))).mode & 0o7777, 0o755);
    assert.equal((await lstat(dest)).mode & 0o7777, 0o755);
  });

  it('is deterministic: the same tree gives the same sha256 whatever the mtimes and umask', async () => {
    const first = await packDirectory(app);
    await utimes(join(app, 'server.js'), new Date(), new Date(2011, 1, 1));
    await chmod(join(app, 'server.js'), 0o600);
    await chmod(join(app, 'run.sh'), 0o700);
    await chmod(join(app, 'lib'), 0o700);
    const second = await packDirectory(app);
    assert.equal(second.sha256, first.sha256);
    assert.ok(second.tarball.equals(first.tarball));
    await chmod(join(app, 'lib'), 0o755);

    await put('server.js', 'console.log("changed")\n');
    const third = await packDirectory(app);
    assert.notEqual(third.sha256, first.sha256);
    await put('server.js', 'console.log("hi")\n', 0o644);
  });

  it('stops early with package_too_large when over the limits', async () => {
    for (const [limits, pattern] of [
      [{ maxEntries: 5 }, /more than 5 entries/],
      [{ maxBytes: 100 }, /more than 100 B/],
    ] as const) {
      try {
        await packDirectory(app, limits);
        assert.fail('expected package_too_large');
      } catch (err) {
        assert.ok(err instanceof EnjinError);
        assert.equal(err.code, 'package_too_large');
        assert.match(err.message, pattern);
      }
    }
  });
});
