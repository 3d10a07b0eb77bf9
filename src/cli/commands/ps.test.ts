import { test } from 'node:test';
import assert from 'node:assert/strict';
import { healthText } from './ps.ts';

test('the HEALTH column: healthy, starting, unhealthy with the probe’s reason (one line, shortened), - without a check', () => {
  const probe = (output: string) => ({ ok: false, at: '2026-01-01T00:00:00.000Z', durationMs: 3, output, failures: 1 });
  assert.equal(healthText({ health: 'healthy', probe: null }), 'healthy');
  assert.equal(healthText({ health: 'starting', probe: null }), 'starting');
  assert.equal(healthText({ health: 'none', probe: null }), '-');
  assert.equal(healthText({ health: 'unhealthy', probe: probe('HTTP 503 from /healthz') }), 'unhealthy: HTTP 503 from /healthz');
  assert.equal(healthText({ health: 'unhealthy', probe: probe('`check.sh` exited with code 1: db down\nmore') }), 'unhealthy: `check.sh` exited with code 1: db down');
  assert.ok(healthText({ health: 'unhealthy', probe: probe('x'.repeat(200)) }).length <= 'unhealthy: '.length + 60);
});
