// How `enjin logs` shows what agents wrote: the agent's stamp becomes a time field, instances' lines merge by time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatLogLine, logLines } from './logs.ts';

test('stamped lines become { time, instance, service, line }, merged across instances by time', () => {
  const lines = logLines([
    { instanceId: 'inst_aaaaaa111111', service: 'web', data: '2026-11-23T16:00:01.000Z a1\n2026-11-23T16:00:03.000Z a2\n' },
    { instanceId: 'inst_bbbbbb222222', service: 'web', data: '2026-11-23T16:00:02.000Z b1\n2026-11-23T16:00:02.000Z [enjin] started\n' },
    { instanceId: 'inst_cccccc333333', service: 'web', data: '' },
  ]);
  assert.deepEqual(lines.map((l) => [l.time, l.instance.slice(-1), l.line]), [
    ['2026-11-23T16:00:01.000Z', '1', 'a1'],
    ['2026-11-23T16:00:02.000Z', '2', 'b1'],
    ['2026-11-23T16:00:02.000Z', '2', '[enjin] started'],
    ['2026-11-23T16:00:03.000Z', '1', 'a2'],
  ]);
  assert.equal(formatLogLine(lines[0]), '2026-11-23T16:00:01.000Z web.111111 | a1');
});

test('lines written before stamps existed keep their place and show no time; blank lines are kept', () => {
  const lines = logLines([{ instanceId: 'inst_x', service: 'worker', data: 'old line\n\n2026-11-23T16:00:01.000Z new\ncontinued' }]);
  assert.deepEqual(lines.map((l) => [l.time, l.line]), [[null, 'old line'], [null, ''], ['2026-11-23T16:00:01.000Z', 'new'], [null, 'continued']]);
  assert.match(formatLogLine(lines[0]), /^- +worker\.inst_x \| old line$/);
});
