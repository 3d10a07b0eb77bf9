import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnjinError } from '../core/errors.ts';
import { ROOT_FILE_MAX } from '../artifact/rules.ts';
import { KeptPackages, listKept, packageFileName, parseMarker, readVersionManifest } from './kept-versions.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-kept-'));
after(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
function versionDir(files: Record<string, string> = {}): string {
  const dir = join(root, `v${++dirs}`);
  mkdirSync(dir);
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  return dir;
}

const isId = (id: string): boolean => /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id);
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

test('the manifest is enjin.yaml, else enjin.yml, else the Procfile', async () => {
  assert.deepEqual(await readVersionManifest(versionDir({ 'enjin.yaml': 'project: a\n', Procfile: 'web: x\n' }), 'v'), { file: 'enjin.yaml', text: 'project: a\n' });
  assert.deepEqual(await readVersionManifest(versionDir({ 'enjin.yml': 'project: b\n', Procfile: 'web: x\n' }), 'v'), { file: 'enjin.yml', text: 'project: b\n' });
  assert.deepEqual(await readVersionManifest(versionDir({ Procfile: 'web: node server.js\n' }), 'v'), { file: 'Procfile', text: 'web: node server.js\n' });
  await assert.rejects(readVersionManifest(versionDir({ 'README': 'no manifest' }), 'v'), (e: EnjinError) => e.code === 'not_found' && /fetch its package/.test(e.message));
  await assert.rejects(readVersionManifest(join(root, 'never-unpacked'), 'v'), (e: EnjinError) => e.code === 'not_found');
});

test('a manifest the app replaced with a link, a hard link, a FIFO or a huge file is refused, never read', async () => {
  const secret = join(root, 'secret.txt');
  writeFileSync(secret, 'the agent may read this, the app may not\n');
  const linked = versionDir({ Procfile: 'web: x\n' });
  symlinkSync(secret, join(linked, 'enjin.yaml'));
  await assert.rejects(readVersionManifest(linked, 'ver_l'), (e: EnjinError) => {
    assert.equal(e.code, 'package_unsafe');
    assert.match(e.message, /enjin\.yaml of version ver_l on this node is a symbolic link/);
    assert.doesNotMatch(e.message, /may not/);
    return true;
  });
  const hard = versionDir();
  linkSync(secret, join(hard, 'enjin.yaml'));
  await assert.rejects(readVersionManifest(hard, 'ver_h'), (e: EnjinError) => e.code === 'package_unsafe' && /hard links/.test(e.message));
  const fifo = versionDir();
  assert.equal(spawnSync('mkfifo', [join(fifo, 'enjin.yaml')]).status, 0);
  // O_NONBLOCK: the open returns at once instead of waiting for a writer that never comes.
  await assert.rejects(readVersionManifest(fifo, 'ver_f'), (e: EnjinError) => e.code === 'package_unsafe' && /not a regular file/.test(e.message));
  const dir = versionDir({ 'enjin.yaml': 'x'.repeat(ROOT_FILE_MAX + 1) });
  await assert.rejects(readVersionManifest(dir, 'ver_big'), (e: EnjinError) => e.code === 'manifest_too_large' && e.status === 413 && /is 1 MiB \(1048577 bytes\); a manifest may be at most 1 MiB/.test(e.message));
  const exact = versionDir({ 'enjin.yaml': 'y'.repeat(ROOT_FILE_MAX) });
  assert.equal((await readVersionManifest(exact, 'ver_max')).text.length, ROOT_FILE_MAX, 'exactly the limit is read');
});

test('markers from an older agent (sha256 and at only) are read, with project, size and number null', async () => {
  const s = 'a'.repeat(64);
  assert.deepEqual(parseMarker(JSON.stringify({ sha256: s, at: '2026-01-01T00:00:00.000Z' })), { sha256: s, at: '2026-01-01T00:00:00.000Z', project: null, size: null, number: null });
  assert.deepEqual(parseMarker(JSON.stringify({ sha256: s, at: 'x', project: 'shop', size: 12, number: 3 })), { sha256: s, at: 'x', project: 'shop', size: 12, number: 3 });
  assert.equal(parseMarker('not json'), null);
  assert.equal(parseMarker(JSON.stringify({ sha256: 'short', at: 'x' })), null);

  const dir = join(root, 'versions-old');
  mkdirSync(join(dir, 'ver_old'), { recursive: true });
  writeFileSync(join(dir, 'ver_old.prepared'), JSON.stringify({ sha256: s, at: '2026-01-01T00:00:00.000Z' }));
  // a marker whose directory is gone is not a prepared version; nor is a stray file
  writeFileSync(join(dir, 'ver_gone.prepared'), JSON.stringify({ sha256: s, at: 'x' }));
  writeFileSync(join(dir, 'package.json'), '{}');
  assert.deepEqual(await listKept(dir, isId), [
    { versionId: 'ver_old', project: null, sha256: s, size: null, number: null, preparedAt: '2026-01-01T00:00:00.000Z', packageKept: false },
  ]);
});

test('kept packages are served by sha256 only when the marker says so and the size matches, in bounded reads', async () => {
  const dir = join(root, 'versions-kept');
  const bytes = Buffer.from('pretend this is a gzip tarball '.repeat(100));
  const put = (id: string, body: Buffer, marker: object): void => {
    mkdirSync(join(dir, id), { recursive: true });
    writeFileSync(join(dir, packageFileName(id)), body);
    writeFileSync(join(dir, `${id}.prepared`), JSON.stringify(marker));
  };
  put('ver_ok', bytes, { sha256: sha(bytes), at: 't', project: 'shop', size: bytes.length, number: 7 });
  const short = Buffer.from('cut short');
  put('ver_short', short, { sha256: sha('the whole thing'), at: 't', project: 'shop', size: 1000, number: null });
  const kept = await listKept(dir, isId);
  assert.deepEqual(kept.map((k) => [k.versionId, k.packageKept, k.size, k.number]), [['ver_ok', true, bytes.length, 7], ['ver_short', false, null, null]]);
  const reader = new KeptPackages(dir, () => listKept(dir, isId));
  assert.equal(await reader.size(sha(bytes)), bytes.length);
  assert.equal(await reader.size(sha('the whole thing')), null, 'a package whose size does not match is not served');
  assert.equal(await reader.size(sha('anything else')), null);
  assert.deepEqual(await reader.read(sha(bytes), 10, 20), bytes.subarray(10, 30));
  assert.deepEqual(await reader.read(sha(bytes), bytes.length - 5, 100), bytes.subarray(bytes.length - 5), 'never past the end');
  assert.equal(await reader.read(sha(bytes), -1, 10), null);
  rmSync(join(dir, packageFileName('ver_ok')));
  assert.equal(await reader.size(sha(bytes)), null, 'a package removed meanwhile is not served');
});
