import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RestartSpec } from '../core/model.ts';
import { decideRestart, type RestartHistory, type RunEnd } from './restart-policy.ts';

const policy = (over: Partial<RestartSpec> = {}): RestartSpec => ({ policy: 'always', maxAttempts: 3, window: 60, backoff: { initial: 1, max: 8 }, ...over });
const exit = (code: number | null, signal: string | null = null): RunEnd => ({ kind: 'exit', code, signal, how: signal ? `was killed by ${signal}` : `exited with code ${code}` });
const fresh: RestartHistory = { attempts: [], streak: 0 };

test('exit 0 restarts under always, finishes under on-failure and never', () => {
  assert.equal(decideRestart(policy(), exit(0), fresh, 100, 0).action, 'restart');
  const onFailure = decideRestart(policy({ policy: 'on-failure' }), exit(0), fresh, 100, 0);
  assert.equal(onFailure.action, 'finish');
  assert.match((onFailure as { reason: string }).reason, /exited with code 0: finished/);
  assert.equal(decideRestart(policy({ policy: 'never' }), exit(0), fresh, 100, 0).action, 'finish');
});

test('a crash restarts under always and on-failure, fails under never', () => {
  assert.equal(decideRestart(policy(), exit(1), fresh, 100, 0).action, 'restart');
  assert.equal(decideRestart(policy({ policy: 'on-failure' }), exit(null, 'SIGKILL'), fresh, 100, 0).action, 'restart');
  const never = decideRestart(policy({ policy: 'never' }), exit(3), fresh, 100, 0);
  assert.equal(never.action, 'fail');
  assert.match((never as { reason: string }).reason, /code 3; restart policy never/);
  // A liveness kill is a failure too, whatever the exit code the kill caused.
  assert.equal(decideRestart(policy({ policy: 'on-failure' }), { kind: 'liveness', how: 'failed 3 health checks' }, fresh, 100, 0).action, 'restart');
  assert.equal(decideRestart(policy({ policy: 'never' }), { kind: 'liveness', how: 'failed 3 health checks' }, fresh, 100, 0).action, 'fail');
});

test('the backoff applies from the first restart, doubles, is capped, and resets after a long run', () => {
  let h = fresh;
  const waits: number[] = [];
  for (let i = 0; i < 6; i++) {
    const d = decideRestart(policy({ maxAttempts: 100 }), exit(1), h, 10, i * 1000);
    assert.equal(d.action, 'restart');
    if (d.action !== 'restart') return;
    waits.push(d.waitMs);
    h = d.history;
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 8000, 8000]);
  const after = decideRestart(policy({ maxAttempts: 100 }), exit(1), h, 60_000, 10_000);
  assert.equal(after.action === 'restart' && after.waitMs, 1000, 'a run of a minute starts the backoff again');
  const overridden = decideRestart(policy(), exit(1), fresh, 10, 0, { initialMs: 250 });
  assert.equal(overridden.action === 'restart' && overridden.waitMs, 250, 'the agent override wins');
  const zero = decideRestart(policy({ backoff: { initial: 0, max: 0 } }), exit(1), fresh, 10, 0);
  assert.equal(zero.action === 'restart' && zero.waitMs, 100, 'never without a pause');
});

test('max_attempts within a sliding window: exhausted means failed, and old attempts slide out', () => {
  const p = policy({ maxAttempts: 2, window: 10 });
  let h = fresh;
  for (const at of [0, 1000]) {
    const d = decideRestart(p, exit(1), h, 10, at);
    assert.equal(d.action, 'restart');
    if (d.action === 'restart') h = d.history;
  }
  const third = decideRestart(p, exit(1), h, 10, 2000);
  assert.equal(third.action, 'fail');
  assert.match((third as { reason: string }).reason, /restarted 2 times within 10 s \(max_attempts 2\): gave up/);
  // 10.5 s after the first attempt, it has left the window: one more restart is allowed.
  const later = decideRestart(p, exit(1), h, 10, 10_500);
  assert.equal(later.action, 'restart');
  assert.deepEqual(later.action === 'restart' && later.history.attempts, [1000, 10_500]);
});

test('specs from the bus: a health check or restart policy that makes no sense is refused', async () => {
  const { checkSpec } = await import('./instance-spec.ts');
  const base = { instanceId: 'inst_1', workspace: 'w', project: 'p', service: 's', versionId: 'ver_1', command: 'x', env: {}, listens: true, healthPath: null, startTimeout: 5, stopTimeout: 5 };
  assert.doesNotThrow(() => checkSpec({ ...base, health: { http: '/h', startTimeout: 5, interval: 1, timeout: 1, retries: 3, grace: 0 }, restart: policy() }));
  assert.doesNotThrow(() => checkSpec(base), 'an older controller sends neither');
  assert.throws(() => checkSpec({ ...base, health: { http: '/h', startTimeout: 5, interval: 0 } }), /health.interval must be a number of seconds above 0/);
  assert.throws(() => checkSpec({ ...base, health: { command: 42, startTimeout: 5 } }), /health.command must be a string/);
  assert.throws(() => checkSpec({ ...base, restart: { ...policy(), policy: 'sometimes' } }), /restart.policy must be always, on-failure or never/);
});
