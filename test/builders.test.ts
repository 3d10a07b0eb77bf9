// End-to-end: apps with no enjin.yaml (or only a Procfile) are built by the builder their files call for, through
// `enjin up`: a Node app with only package.json and package-lock.json (one dependency from the npm registry), a Python
// app with a Procfile and a local package in requirements.txt, a static site; a code-only redeploy reuses the cache.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { basename, join } from 'node:path';
import { EnjinProcess, cleanup, eventually, fixture, tempDir, viaRouter } from './support/enjin.ts';
import { appsDirFor } from '../src/agent/app-accounts.ts';

interface JobTree {
  title: string;
  state: string;
  log?: string[];
  children?: JobTree[];
}

/** Every log line of a job tree, in order, with the job it came from. */
function logLines(tree: JobTree): string[] {
  return [...(tree.log ?? []), ...(tree.children ?? []).flatMap(logLines)];
}

/** A GET through the router with the headers a browser sends, and the raw (possibly compressed) body. */
function rawGet(port: number, host: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('builders', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  const dirs: string[] = [];

  before(async () => {
    dataDir = tempDir('builders');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    cleanup(dataDir, ...dirs, appsDirFor(join(dataDir, 'agent')));
  });

  const copy = (name: string) => {
    const d = fixture(name);
    dirs.push(d);
    return d;
  };
  const edit = (dir: string, file: string, fn: (s: string) => string) => writeFileSync(join(dir, file), fn(readFileSync(join(dir, file), 'utf8')));

  /** Deploys `dir` and returns the prepare lines of its job log (from the builder line on). */
  async function deploy(dir: string, project: string | null): Promise<string[]> {
    const r = await enjin.cli(['--json', 'deploy', dir, ...(project ? ['--project', project] : [])], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    assert.equal(r.json.job.state, 'succeeded', JSON.stringify(r.json.job));
    return logLines(r.json.job as JobTree);
  }

  test('a Node app with only package.json and package-lock.json: npm ci, npm start, on PROJECT.DOMAIN too; a code-only redeploy reuses node_modules', async () => {
    const app = copy('builder-node');
    const first = await deploy(app, 'nodebuilt');
    const builderLine = first.findIndex((l) => l.startsWith('builder: node (package.json found, package-lock.json → npm ci)'));
    assert.ok(builderLine >= 0, first.join('\n'));
    assert.ok(first.some((l) => /no cached node_modules/.test(l)), first.join('\n'));
    assert.ok(first.some((l) => /saved node_modules in the cache/.test(l)), first.join('\n'));
    for (const host of ['web.nodebuilt.localhost', 'nodebuilt.localhost']) {
      const res = await viaRouter(enjin.routerPort, host);
      assert.equal(res.status, 200, host);
      assert.equal(res.body, 'node first: 2m\n');
    }

    edit(app, 'server.js', (s) => s.replace("'first'", "'second'"));
    const second = await deploy(app, 'nodebuilt');
    assert.ok(second.some((l) => /reused node_modules from the cache \(package-lock\.json unchanged/.test(l)), second.join('\n'));
    assert.ok(!second.some((l) => /no cached node_modules/.test(l)), 'nothing was installed again');
    const res = await viaRouter(enjin.routerPort, 'nodebuilt.localhost');
    assert.equal(res.body, 'node second: 2m\n');

    // The cache: the project's own, private to the app's user, holding npm's cache and one node_modules.
    const cache = join(appsDirFor(join(dataDir, 'agent')), 'caches', 'nodebuilt');
    const s = statSync(cache);
    assert.equal(s.mode & 0o777, 0o700);
    if (process.getuid?.() === 0) assert.notEqual(s.uid, 0, 'owned by the app user, not root');
    const entries = readdirSync(cache).sort();
    assert.ok(entries.includes('npm'), entries.join(' '));
    assert.equal(entries.filter((e) => e.startsWith('node_modules-')).length, 1, entries.join(' '));

    // destroy frees the node's disk: the project's unpacked versions, kept packages and build cache go.
    const versionsDir = join(appsDirFor(join(dataDir, 'agent')), 'versions');
    const ids = ((await enjin.cli(['--json', 'versions', '--project', 'nodebuilt'])).json.versions as Array<{ id: string }>).map((v) => v.id);
    assert.ok(ids.every((id) => existsSync(join(versionsDir, id))), `the versions are unpacked in ${versionsDir}`);
    const destroyed = await enjin.cli(['destroy', 'nodebuilt'], { timeoutMs: 300_000 });
    assert.equal(destroyed.code, 0, destroyed.stderr);
    await eventually(() => !existsSync(cache) && ids.every((id) => !existsSync(join(versionsDir, id)) && !existsSync(join(versionsDir, `.package-${id}.tar.gz`))), 'the versions and the cache removed', 60_000);
  });

  test('a Python app with a Procfile and a local package: a virtualenv on PATH and in VIRTUAL_ENV; reused when requirements.txt is unchanged', async () => {
    const app = copy('builder-python');
    execFileSync('python3', [join(app, 'vendor/make_wheel.py')]);
    const first = await deploy(app, 'pybuilt');
    assert.ok(first.some((l) => l.startsWith('builder: python (requirements.txt found')), first.join('\n'));
    const res = await viaRouter(enjin.routerPort, 'pybuilt.localhost');
    assert.equal(res.status, 200);
    const [greeting, prefix, venv] = res.body.trim().split('\n');
    assert.equal(greeting, 'hello python first');
    // `python` in the Procfile is the virtualenv's: its sys.prefix is the version's .venv, as VIRTUAL_ENV says.
    assert.match(prefix, /^prefix=\/.*\/versions\/[^/]+\/\.venv$/);
    assert.equal(venv, `virtual_env=${prefix.slice('prefix='.length)}`);

    edit(app, 'app.py', (s) => s.replace('RELEASE = "first"', 'RELEASE = "second"'));
    const second = await deploy(app, 'pybuilt');
    assert.ok(second.some((l) => /reused the virtualenv from the cache \(requirements\.txt unchanged/.test(l)), second.join('\n'));
    assert.ok(!second.some((l) => /no cached virtualenv/.test(l)), 'nothing was installed again');
    const again = await viaRouter(enjin.routerPort, 'web.pybuilt.localhost');
    const [greeting2, prefix2] = again.body.trim().split('\n');
    assert.equal(greeting2, 'hello python second');
    assert.notEqual(prefix2, prefix, 'the new version has its own virtualenv, its paths rewritten from the cached one');
  });

  test('a static site, named after its directory: content types, caching headers and gzip, dot files never served', async () => {
    const app = copy('builder-static');
    const lines = await deploy(app, null);
    const project = basename(app).toLowerCase().replace(/[^a-z0-9-]+/g, '-');
    assert.ok((await enjin.cli(['--json', 'projects'])).stdout.includes(`"${project}"`), `project ${project} exists`);
    assert.ok(lines.some((l) => l.startsWith('builder: static (index.html found')), lines.join('\n'));
    const html = await rawGet(enjin.routerPort, `${project}.localhost`, '/');
    assert.equal(html.status, 200);
    assert.equal(html.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(html.headers['cache-control'], 'no-cache');
    assert.match(html.body.toString(), /static builder/);
    const css = await rawGet(enjin.routerPort, `${project}.localhost`, '/style.css', { 'accept-encoding': 'gzip' });
    assert.equal(css.status, 200);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    assert.equal(css.headers['content-encoding'], 'gzip');
    assert.match(String(css.headers['cache-control']), /max-age=/);
    const { gunzipSync } = await import('node:zlib');
    assert.equal(gunzipSync(css.body).toString(), readFileSync(join(app, 'style.css'), 'utf8'));
    const hidden = await rawGet(enjin.routerPort, `${project}.localhost`, '/.enjin-build/node.sh');
    assert.equal(hidden.status, 404);
  });
});
