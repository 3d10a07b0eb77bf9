// Tests for the one duration grammar shared by enjin.yaml and the command line.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration } from '../cli/roles/durations.ts';
import { durationSeconds, formatDuration, parseDurationSeconds } from './durations.ts';
import { EnjinError } from './errors.ts';

describe('durationSeconds', () => {
  it('reads units, compounds and bare numbers of seconds', () => {
    const cases: [unknown, number][] = [
      ['500ms', 0.5], ['10s', 10], ['5m', 300], ['1h', 3600], ['7d', 604_800], ['1m30s', 90], ['1h 30m', 5400],
      ['1.5s', 1.5], ['0.1s', 0.1], ['2s500ms', 2.5], [' 10S ', 10], ['30', 30], ['0', 0], [45, 45], [0.25, 0.25], [0, 0],
    ];
    for (const [input, seconds] of cases) assert.equal(durationSeconds(input), seconds, `for ${JSON.stringify(input)}`);
  });

  it('refuses anything else', () => {
    for (const input of ['', ' ', 'ten seconds', '10x', 's', '-5s', '5s5s', '30s1m', '1.s', '1e3', 'ms10', -1, Number.NaN, Infinity, true, null, undefined, {}]) {
      assert.equal(durationSeconds(input), null, `for ${String(input)}`);
    }
  });

  it('throws a clear invalid_request error naming the field', () => {
    assert.throws(() => parseDurationSeconds('--ttl', 'soon'), (err: unknown) => {
      assert.ok(err instanceof EnjinError);
      assert.equal(err.code, 'invalid_request');
      assert.equal(err.message, '--ttl must be a duration such as 10s, 500ms or 5m, or a number of seconds (got "soon")');
      return true;
    });
  });

  it('shows durations back in the same grammar', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(90), '1m30s');
    assert.equal(formatDuration(0.5), '500ms');
    assert.equal(formatDuration(3600), '1h');
    assert.equal(formatDuration(86_400 + 1.25), '1d1s250ms');
    for (const s of [0.1, 2, 61, 7200, 93_784.5]) assert.equal(durationSeconds(formatDuration(s)), s);
  });
});

describe('CLI parseDuration', () => {
  it('uses the same grammar, in milliseconds', () => {
    assert.equal(parseDuration('--event-retention', '7d'), 604_800_000);
    assert.equal(parseDuration('--ttl', '1m30s'), 90_000);
    assert.equal(parseDuration('--ttl', '250ms'), 250);
    assert.equal(parseDuration('--ttl', '30'), 30_000);
    assert.throws(() => parseDuration('--ttl', '5 minutes'), /--ttl must be a duration such as 10s, 500ms or 5m/);
  });
});
