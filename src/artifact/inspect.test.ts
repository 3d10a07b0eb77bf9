// Hostile and broken packages: each must be rejected whole by inspectPackage and unpackPackage, with nothing written.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { EnjinError } from '../core/errors.ts';
import { inspectPackage } from './inspect.ts';
import { unpackPackage } from './unpack.ts';

interface RawEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO' | 'ContiguousFile' | 'SparseFile' | 'ExtendedHeader' | 'GlobalExtendedHeader';
  linkpath?: string;
  body?: string;
  /** the size the header claims, when it should differ from the body */
  size?: number;
}

/** Writes tar headers by hand, so the archive holds exactly what a hostile client would send. */
function rawTar(entries: RawEntry[], trailer = Buffer.alloc(0)): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const block = Buffer.alloc(512);
    new Header({
      path: e.path,
      type: e.type ?? 'File',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: e.size ?? body.length,
      mtime: new Date(0),
      ...(e.linkpath ? { linkpath: e.linkpath } : {}),
    }).encode(block);
    blocks.push(block);
    if (body.length) blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024), trailer);
  return Buffer.concat(blocks);
}

/** A PAX extended header with these records ("LEN key=value\n", LEN counting the whole record). */
function pax(path: string, records: Record<string, string>): RawEntry {
  let body = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let n = rest.length + 1;
    while (String(n).length + rest.length !== n) n++;
    body += `${n}${rest}`;
  }
  return { path, type: 'ExtendedHeader', body };
}

const benign: RawEntry[] = [
  { path: 'enjin.yaml', body: 'project: x\n' },
  { path: 'ok.txt', body: 'fine' },
];

const hostile: Array<[string, RawEntry[], string]> = [
  ['a ".." path', [{ path: '../evil', body: 'x' }], '../evil'],
  ['a nested ".." path', [{ path: 'a/../../evil', body: 'x' }], 'a/../../evil'],
  ['an absolute path', [{ path: '/etc/x', body: 'x' }], '/etc/x'],
  ['a symlink to /etc/passwd', [{ path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' }], 'passwd'],
  ['a symlink a -> ../../x', [{ path: 'a', type: 'SymbolicLink', linkpath: '../../x' }], 'a'],
  ['a nested symlink leaving the root', [{ path: 'sub/', type: 'Directory' }, { path: 'sub/up', type: 'SymbolicLink', linkpath: '../..' }], 'sub/up'],
  ['a hard link', [{ path: 'h', type: 'Link', linkpath: 'ok.txt' }], 'h'],
  ['a character device', [{ path: 'dev', type: 'CharacterDevice' }], 'dev'],
  ['a block device', [{ path: 'blk', type: 'BlockDevice' }], 'blk'],
  ['a FIFO', [{ path: 'fifo', type: 'FIFO' }], 'fifo'],
  ['an unsupported type', [{ path: 'sparse', type: 'SparseFile' }], 'sparse'],
  ['a write through a symlink', [{ path: 'd', type: 'SymbolicLink', linkpath: 'sub' }, { path: 'sub/', type: 'Directory' }, { path: 'd/x', body: 'x' }], 'd/x'],
  ['a write through a symlink differing in case', [{ path: 'D', type: 'SymbolicLink', linkpath: 'sub' }, { path: 'sub/', type: 'Directory' }, { path: 'd/x', body: 'x' }], 'd/x'],
  ['a duplicate path', [{ path: 'ok.txt', body: 'again' }], 'ok.txt'],
  ['a write through a symlink declared after it', [{ path: 'sub/', type: 'Directory' }, { path: 'd/x', body: 'x' }, { path: 'd', type: 'SymbolicLink', linkpath: 'sub' }], 'd/x'],
  // PAX sparse 1.0 (what GNU tar writes for a 2 GB hole today) and 0.1: node-tar drops the keys, so only our check sees them.
  ['a PAX sparse file (format 1.0)', [pax('PaxHeader/big', { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': 'big', 'GNU.sparse.realsize': '2147483648' }), { path: 'GNUSparseFile.0/big', body: 'x' }], 'GNUSparseFile.0/big'],
  ['a PAX sparse file (format 0.1)', [pax('PaxHeader/big', { 'GNU.sparse.size': '2147483648', 'GNU.sparse.numblocks': '1', 'GNU.sparse.map': '0,1' }), { path: 'big', body: 'x' }], 'big'],
  // a/b/l resolves to the root; a/b/x -> l/../etc then climbs one level above it on a real filesystem.
  ['a ".." after another symlink', [{ path: 'a/b/l', type: 'SymbolicLink', linkpath: '../..' }, { path: 'a/b/x', type: 'SymbolicLink', linkpath: 'l/../etc' }], 'a/b/x'],
];

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'enjin-inspect-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<EnjinError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof EnjinError, `expected EnjinError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

/** Writes the tarball where the agent would have downloaded it and tries to unpack it into a fresh parent. */
async function tryUnpack(tarball: Buffer, name: string): Promise<{ err: EnjinError; parent: string }> {
  const file = join(work, `${name}.tar.gz`);
  await writeFile(file, tarball);
  const parent = await mkdtemp(join(work, 'dest-'));
  const sha = createHash('sha256').update(tarball).digest('hex');
  const err = await rejection(unpackPackage(file, join(parent, 'v1'), sha));
  return { err, parent };
}

describe('hostile packages', () => {
  hostile.forEach(([what, extra, offender], i) => {
    it(`rejects ${what} whole, in inspect and unpack`, async () => {
      const tarball = gzipSync(rawTar([...benign, ...extra]));
      const err = await rejection(inspectPackage(tarball));
      assert.equal(err.code, 'package_unsafe');
      assert.equal(err.status, 422);
      assert.ok(err.details.some((d) => d.file === offender), `no detail for ${offender}: ${JSON.stringify(err.details)}`);
      const { err: again, parent } = await tryUnpack(tarball, `hostile-${i}`);
      assert.equal(again.code, 'package_unsafe');
      assert.deepEqual(await readdir(parent), [], 'nothing may be written');
    });
  });

  it('reports every unsafe entry at once', async () => {
    const tarball = gzipSync(rawTar([...benign, { path: '../a', body: 'x' }, { path: '/b', body: 'x' }, { path: 'c', type: 'Link', linkpath: 'ok.txt' }]));
    const err = await rejection(inspectPackage(tarball));
    assert.deepEqual(err.details.map((d) => d.file), ['../a', '/b', 'c']);
    assert.match(err.message, /3 unsafe entries and was rejected whole/);
  });

  it('stops at the header of an entry claiming a huge size', async () => {
    const tarball = gzipSync(rawTar([...benign, { path: 'big', size: 10 * 1024 ** 3 }]));
    const err = await rejection(inspectPackage(tarball));
    assert.equal(err.code, 'package_unsafe');
    assert.match(err.message, /more than 1 GiB/);
    assert.equal(err.details[0].file, 'big');
    const { err: again, parent } = await tryUnpack(tarball, 'huge');
    assert.equal(again.code, 'package_unsafe');
    assert.deepEqual(await readdir(parent), []);
  });

  it('enforces the entry and size limits', async () => {
    const many = gzipSync(rawTar(Array.from({ length: 20 }, (_, i) => ({ path: `f${i}`, body: 'x' }))));
    assert.match((await rejection(inspectPackage(many, { maxEntries: 10 }))).message, /more than 10 entries/);
    const zeros = gzipSync(rawTar([{ path: 'zeros', body: '\0'.repeat(4 * 1024 ** 2) }]));
    assert.equal(zeros.length < 64 * 1024, true);
    assert.match((await rejection(inspectPackage(zeros, { maxBytes: 1024 ** 2 }))).message, /more than 1 MiB/);
  });

  it('stops a gzip bomb while streaming, at the decompression cap', async () => {
    // A small valid archive followed by 64 MiB of zeros: headers claim nothing, only the cap can stop it.
    const bomb = gzipSync(rawTar(benign, Buffer.alloc(64 * 1024 ** 2)));
    assert.equal(bomb.length < 256 * 1024, true);
    const err = await rejection(inspectPackage(bomb, { maxBytes: 1024 ** 2, maxEntries: 10 }));
    assert.equal(err.code, 'package_unsafe');
    // With the default limits the same bytes are harmless: junk after the end is counted, not parsed.
    const info = await inspectPackage(bomb);
    assert.equal(info.files, 2);
  });
});

describe('invalid packages', () => {
  const cases: Array<[string, Buffer]> = [
    ['random bytes', Buffer.from('definitely not a tarball')],
    ['an uncompressed tar', rawTar(benign)],
    ['gzip of something that is not tar', gzipSync(Buffer.from('hello world, not a tar archive'))],
    ['a truncated gzip', gzipSync(rawTar(benign)).subarray(0, 60)],
    ['a tar cut inside an entry', gzipSync(rawTar([{ path: 'x', body: 'y'.repeat(5000) }]).subarray(0, 1536))],
    ['an empty gzip', gzipSync(Buffer.alloc(0))],
  ];
  for (const [what, tarball] of cases) {
    it(`rejects ${what} as package_invalid`, async () => {
      const err = await rejection(inspectPackage(tarball));
      assert.equal(err.code, 'package_invalid', err.message);
      assert.equal(err.status, 422);
    });
  }

  it('rejects a header with a bad checksum', async () => {
    const tar = rawTar(benign);
    tar[0] = 'E'.charCodeAt(0); // enjin.yaml → Enjin.yaml without fixing the checksum
    const err = await rejection(inspectPackage(gzipSync(tar)));
    assert.equal(err.code, 'package_invalid');
  });
});

describe('inspectPackage', () => {
  it('counts entries, hashes the bytes and reads small root files', async () => {
    const tarball = gzipSync(
      rawTar([
        { path: './', type: 'Directory' },
        { path: './enjin.yaml', body: 'project: x\n' },
        { path: 'Procfile', body: 'web: node s.js\n' },
        { path: 'lib/', type: 'Directory' },
        { path: 'lib/enjin.yaml', body: 'nested, not captured' },
        { path: 'current', type: 'SymbolicLink', linkpath: 'lib' },
        { path: 'huge.txt', body: 'z'.repeat(1024 ** 2 + 1) },
      ]),
    );
    const info = await inspectPackage(tarball);
    assert.equal(info.sha256, createHash('sha256').update(tarball).digest('hex'));
    assert.equal(info.files, 5);
    assert.equal(info.unpackedSize, 11 + 15 + 20 + 1024 ** 2 + 1);
    assert.equal(info.read('enjin.yaml'), 'project: x\n');
    assert.equal(info.read('./Procfile'), 'web: node s.js\n');
    assert.equal(info.read('lib/enjin.yaml'), null);
    assert.equal(info.read('huge.txt'), null, 'root files over 1 MiB are not kept');
    assert.equal(info.read('missing'), null);
  });

  it('says a manifest over 1 MiB is too large instead of missing', async () => {
    const info = await inspectPackage(gzipSync(rawTar([{ path: 'enjin.yaml', body: '#'.repeat(1024 ** 2 + 1) }])));
    const err = await rejection((async () => info.read('enjin.yaml'))());
    assert.equal(err.code, 'manifest_too_large');
    assert.match(err.message, /enjin\.yaml is 1 MiB \(1048577 bytes\); a manifest may be at most 1 MiB/);
  });

  it('notes a lockfile over 1 MiB as there for the builders, without reading it or calling it a manifest', async () => {
    const info = await inspectPackage(gzipSync(rawTar([
      { path: 'package.json', body: '{"scripts":{"start":"node s.js"}}' },
      { path: 'package-lock.json', body: ' '.repeat(1024 ** 2 + 1) },
    ])));
    assert.equal(info.read('package-lock.json'), null);
    assert.equal(info.has('package-lock.json'), true);
    assert.equal(info.has('package.json'), true);
    assert.equal(info.has('yarn.lock'), false);
  });

  it('caps entries at 20,000 by default, configurable with ENJIN_PACKAGE_MAX_ENTRIES', async () => {
    const entries = (n: number) => gzipSync(rawTar(Array.from({ length: n }, (_, i) => ({ path: `f${i}`, body: '' }))));
    const over = entries(20_001);
    const err = await rejection(inspectPackage(over));
    assert.match(err.message, /more than 20000 entries, the limit \(ENJIN_PACKAGE_MAX_ENTRIES\)/);
    assert.equal((await inspectPackage(entries(20_000))).files, 20_000);
    process.env.ENJIN_PACKAGE_MAX_ENTRIES = '30000';
    try {
      assert.equal((await inspectPackage(over)).files, 20_001);
      process.env.ENJIN_PACKAGE_MAX_ENTRIES = 'lots';
      assert.equal((await rejection(inspectPackage(over))).code, 'invalid_config');
    } finally {
      delete process.env.ENJIN_PACKAGE_MAX_ENTRIES;
    }
  });
});

describe('unpackPackage', () => {
  it('refuses a file whose sha256 differs, before reading it as tar', async () => {
    const tarball = gzipSync(rawTar(benign));
    const file = join(work, 'corrupt.tar.gz');
    await writeFile(file, tarball);
    const parent = await mkdtemp(join(work, 'dest-'));
    const err = await rejection(unpackPackage(file, join(parent, 'v1'), 'ab'.repeat(32)));
    assert.equal(err.code, 'package_corrupt');
    assert.deepEqual(await readdir(parent), []);
  });

  it('refuses to unpack over an existing directory', async () => {
    const tarball = gzipSync(rawTar(benign));
    const file = join(work, 'exists.tar.gz');
    await writeFile(file, tarball);
    const parent = await mkdtemp(join(work, 'dest-'));
    const sha = createHash('sha256').update(tarball).digest('hex');
    await unpackPackage(file, join(parent, 'v1'), sha);
    const err = await rejection(unpackPackage(file, join(parent, 'v1'), sha));
    assert.equal(err.code, 'unpack_target_exists');
    assert.deepEqual(await readdir(parent), ['v1'], 'no temporary directory is left behind');
  });
});
