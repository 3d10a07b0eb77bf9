import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLog, rotateIfLarger, tailLines } from './logs.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-logs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('readLog reads from an offset, from the end with -1, and restarts at 0 after a rotation', async () => {
  const path = join(dir, 'a.log');
  assert.deepEqual(await readLog(path, 0, 100), { data: '', offset: 0, size: 0 }, 'a missing log reads empty');
  writeFileSync(path, 'line 1\nline 2\n');
  let r = await readLog(path, 0, 100);
  assert.deepEqual(r, { data: 'line 1\nline 2\n', offset: 14, size: 14 });
  appendFileSync(path, 'line 3\n');
  r = await readLog(path, r.offset, 100);
  assert.deepEqual(r, { data: 'line 3\n', offset: 21, size: 21 });
  assert.deepEqual(await readLog(path, -1, 7), { data: 'line 3\n', offset: 21, size: 21 });
  assert.deepEqual(await readLog(path, 0, 4), { data: 'line', offset: 4, size: 21 });
  // rotated: the file is now shorter than the reader's offset
  writeFileSync(path, 'new\n');
  assert.deepEqual(await readLog(path, 21, 100), { data: 'new\n', offset: 4, size: 4 });
});

test('readLog never cuts a UTF-8 character in two', async () => {
  const path = join(dir, 'utf8.log');
  writeFileSync(path, 'aé€😀');
  const r1 = await readLog(path, 0, 2); // 'a' + first byte of 'é'
  assert.deepEqual(r1, { data: 'a', offset: 1, size: 10 });
  const r2 = await readLog(path, 1, 5); // 'é' (2) + '€' (3)
  assert.deepEqual(r2, { data: 'é€', offset: 6, size: 10 });
  const r3 = await readLog(path, 6, 3); // 3 of the 4 bytes of '😀'
  assert.equal(r3.offset, 6);
  assert.equal((await readLog(path, 6, 4)).data, '😀');
});

test('copy-truncate rotation keeps one old file and lets an O_APPEND writer carry on at the start', async () => {
  const path = join(dir, 'rot.log');
  const fd = openSync(path, 'a');
  writeSync(fd, 'x'.repeat(100) + '\n');
  assert.equal(await rotateIfLarger(path, 1000), false);
  assert.equal(await rotateIfLarger(path, 50), true);
  assert.equal(readFileSync(`${path}.1`, 'utf8').length, 101);
  assert.equal(statSync(path).size, 0);
  writeSync(fd, 'after\n');
  closeSync(fd);
  assert.equal(readFileSync(path, 'utf8'), 'after\n', 'no hole of zeros before the new data');
  assert.equal(await tailLines(path), 'after');
});

test('tailLines gives the last lines', async () => {
  const path = join(dir, 'tail.log');
  writeFileSync(path, Array.from({ length: 50 }, (_, i) => `l${i}`).join('\n') + '\n');
  assert.equal(await tailLines(path, 3), 'l47\nl48\nl49');
});
