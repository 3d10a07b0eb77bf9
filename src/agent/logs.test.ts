import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CappedLog } from './log-writer.ts';
import { readLog, tailLines } from './logs.ts';

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

test('the capped writer rotates by rename, keeps the total under its cap and ends files on whole lines', async () => {
  const path = join(dir, 'capped.log');
  const log = new CappedLog(path, 16 * 1024);
  let offset = 0;
  let restarted = false;
  for (let i = 0; i < 2000; i++) {
    log.write(`line ${i} ${'x'.repeat(40)}\n`);
    if (i % 50 === 0) {
      const r = await readLog(path, offset, 1024 * 1024);
      if (r.offset < offset) restarted = true;
      offset = r.offset;
    }
  }
  log.write('y'.repeat(20_000) + '\n'); // one line bigger than a file: cut, never over the cap
  log.write('last line\n');
  log.close();
  const live = statSync(path).size;
  const old = statSync(`${path}.1`).size;
  assert.ok(live <= 8192 && old <= 8192, `each file holds at most half the cap (${live}, ${old})`);
  assert.equal(await tailLines(path, 1), 'last line');
  assert.ok(restarted, 'a reader following by offset was sent back to 0 after a rotation');
  // Whole lines: every file of the line flood begins at a line start.
  const log2 = new CappedLog(join(dir, 'lines.log'), 16 * 1024);
  for (let i = 0; i < 1000; i++) log2.write(`line ${i} ${'x'.repeat(40)}\n`);
  log2.close();
  for (const f of [join(dir, 'lines.log'), join(dir, 'lines.log.1')]) assert.match(readFileSync(f, 'utf8'), /^(line \d+ x{40}\n)+$/);
});

test('the capped writer reports a write it cannot make once, and carries on when it can', () => {
  const errors: string[] = [];
  const sub = join(dir, 'gone');
  const log = new CappedLog(join(sub, 'a.log'), 16 * 1024, (err) => errors.push(err.code ?? '?'));
  log.write('lost 1\n');
  log.write('lost 2\n');
  assert.deepEqual(errors, ['ENOENT']);
  assert.equal(log.dropped, 14);
  mkdirSync(sub);
  log.write('kept\n');
  log.close();
  assert.equal(readFileSync(join(sub, 'a.log'), 'utf8'), 'kept\n');
});

test('tailLines gives the last lines', async () => {
  const path = join(dir, 'tail.log');
  writeFileSync(path, Array.from({ length: 50 }, (_, i) => `l${i}`).join('\n') + '\n');
  assert.equal(await tailLines(path, 3), 'l47\nl48\nl49');
});
