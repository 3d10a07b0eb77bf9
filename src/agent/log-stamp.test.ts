// Unit tests of line stamping: one stamp per line, at its start, whatever the reads' boundaries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineStamper, STAMP_BYTES, stampLines } from './log-stamp.ts';

const t1 = Date.parse('2026-11-23T16:02:23.123Z');
const t2 = t1 + 1500;

test('each line gets the time its first byte was read; a line split across reads gets one stamp', () => {
  const s = new LineStamper();
  const out = [
    s.stamp(Buffer.from('one\ntw'), t1),
    s.stamp(Buffer.from('o\nthree\n'), t2),
    s.stamp(Buffer.from('\n'), t2),
    s.stamp(Buffer.from('partial'), t2),
  ].map((b) => b.toString()).join('');
  assert.equal(
    out,
    '2026-11-23T16:02:23.123Z one\n2026-11-23T16:02:23.123Z two\n2026-11-23T16:02:24.623Z three\n2026-11-23T16:02:24.623Z \n2026-11-23T16:02:24.623Z partial',
  );
  assert.equal(s.midLine, true);
  assert.equal('2026-11-23T16:02:23.123Z '.length, STAMP_BYTES);
});

test('bytes pass through untouched (UTF-8, carriage returns, empty chunks)', () => {
  const s = new LineStamper();
  assert.equal(s.stamp(Buffer.alloc(0), t1).length, 0);
  const text = 'café ☕\r\n\u{1F600}\n';
  assert.equal(s.stamp(Buffer.from(text), t1).toString(), `2026-11-23T16:02:23.123Z café ☕\r\n2026-11-23T16:02:23.123Z \u{1F600}\n`);
  assert.equal(stampLines('[enjin] a\n[enjin] b\n', t1).toString(), '2026-11-23T16:02:23.123Z [enjin] a\n2026-11-23T16:02:23.123Z [enjin] b\n');
});

test('a flood of one-byte lines is stamped line by line', () => {
  const s = new LineStamper();
  const out = s.stamp(Buffer.from('y\n'.repeat(10_000)), t1).toString();
  assert.equal(out, '2026-11-23T16:02:23.123Z y\n'.repeat(10_000));
});
