// The rollout planner, step by step: canaries and their pause, promotion, batches within the surge limit,
// min_healthy_time, the healthy deadline, rollback, a scale in the middle, and several services at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { UpdateSpec } from '../../core/model.ts';
import { nextStep, type RolloutInput, type RolloutInstance, type RolloutStep, type ServiceRollout } from './plan.ts';

const update = (u: Partial<UpdateSpec> = {}): UpdateSpec => ({ parallelism: 1, canary: 0, minHealthyTime: 0, healthyDeadline: 300, autoRollback: true, maxSurge: 0, ...u });

let seq = 0;
const old = (n: number, at = 0): RolloutInstance[] => Array.from({ length: n }, (_, k) => ({ id: `a${++seq}`, side: 'from', state: 'running', health: 'healthy', upSince: at, createdAt: at + k }));
const fresh = (n: number, o: Partial<RolloutInstance> = {}): RolloutInstance[] =>
  Array.from({ length: n }, () => ({ id: `b${++seq}`, side: 'to', state: 'running', health: 'healthy', upSince: 1000, createdAt: 1000, ...o }));

const svc = (o: Partial<ServiceRollout> & { instances: RolloutInstance[] }): ServiceRollout => ({
  service: 'web', update: update(), wanted: 4, wantedFrom: 4, batchStartedAt: null, ...o,
});
const plan = (services: ServiceRollout[], o: Partial<RolloutInput> = {}): RolloutStep => nextStep({ now: 100_000, mode: 'forward', promoted: false, services, ...o });

test('a canary starts beside the old instances (a surge), then the rollout pauses for promotion', () => {
  const a = old(4);
  let step = plan([svc({ update: update({ canary: 1 }), instances: a })]);
  assert.equal(step.kind, 'act');
  assert.deepEqual(step.actions, [{ kind: 'start', service: 'web', side: 'to', count: 1, reason: 'canary 1 of 1' }]);
  // Starting: not paused yet, it waits for the canary's health.
  const canary = fresh(1, { state: 'starting', health: 'starting', upSince: null });
  step = plan([svc({ update: update({ canary: 1 }), instances: [...a, ...canary], batchStartedAt: 1000 })]);
  assert.equal(step.kind, 'wait');
  step = plan([svc({ update: update({ canary: 1 }), instances: [...a, ...fresh(1)] })]);
  assert.equal(step.kind, 'paused');
  assert.match(step.notes.web, /waiting for promotion/);
  assert.deepEqual(step.actions, []);
});

test('promoted canaries count toward the wanted instances: old ones stop, then batches go on', () => {
  const a = old(4);
  const b = fresh(1);
  let step = plan([svc({ update: update({ canary: 1 }), instances: [...a, ...b] })], { promoted: true });
  assert.equal(step.kind, 'act');
  assert.equal(step.actions.length, 1);
  const stop = step.actions[0];
  assert.equal(stop.kind, 'stop');
  assert.deepEqual(stop.kind === 'stop' && stop.instanceIds, [a[0].id]);
  step = plan([svc({ update: update({ canary: 1 }), instances: [...a.slice(1), ...b] })], { promoted: true });
  assert.deepEqual(step.actions.map((x) => [x.kind, x.kind === 'start' ? x.count : 0]), [['start', 1]]);
});

test('batches never exceed parallelism, nor wanted + max_surge alive', () => {
  // parallelism 2, no surge given: a batch's worth of surge.
  let step = plan([svc({ update: update({ parallelism: 2 }), instances: old(4) })]);
  assert.deepEqual(step.actions.map((x) => x.kind === 'start' && x.count), [2]);
  // parallelism 3 but max_surge 1: one at a time above the wanted count.
  step = plan([svc({ update: update({ parallelism: 3, maxSurge: 1 }), instances: old(4) })]);
  assert.deepEqual(step.actions.map((x) => x.kind === 'start' && x.count), [1]);
  // A batch never asks for more than are still missing.
  step = plan([svc({ update: update({ parallelism: 3 }), instances: [...old(1), ...fresh(3)] })]);
  assert.deepEqual(step.actions.map((x) => x.kind === 'start' && x.count), [1]);
  // parallelism 0 after canaries: all the rest at once.
  step = plan([svc({ update: update({ parallelism: 0, canary: 1 }), instances: [...old(3), ...fresh(1)] })], { promoted: true });
  assert.deepEqual(step.actions.map((x) => x.kind === 'start' && x.count), [3]);
});

test('old instances stop only once the new batch has stayed healthy for min_healthy_time', () => {
  const a = old(2);
  const b = fresh(1, { upSince: 90_000 });
  let step = plan([svc({ wanted: 2, update: update({ minHealthyTime: 15 }), instances: [...a, ...b], batchStartedAt: 80_000 })]);
  assert.equal(step.kind, 'wait');
  assert.equal(step.wakeAt, 105_000);
  step = plan([svc({ wanted: 2, update: update({ minHealthyTime: 15 }), instances: [...a, ...b], batchStartedAt: 80_000 })], { now: 105_000 });
  assert.equal(step.kind, 'act');
  assert.equal(step.actions[0].kind, 'stop');
  // Healthy again after a failed probe: the clock starts over (upSince is reset by whoever tracks it).
  const unhealthy = fresh(1, { health: 'unhealthy', upSince: null });
  step = plan([svc({ wanted: 2, update: update({ minHealthyTime: 15 }), instances: [...a, ...unhealthy], batchStartedAt: 80_000 })], { now: 105_000 });
  assert.equal(step.kind, 'wait');
  assert.equal(step.wakeAt, 80_000 + 300_000);
});

test('a batch not healthy by the healthy deadline fails the rollout, naming the instance that was not', () => {
  const a = old(2);
  const ok = fresh(1);
  const sick = fresh(1, { health: 'unhealthy', upSince: null });
  const step = plan([svc({ wanted: 2, update: update({ parallelism: 2, healthyDeadline: 60 }), instances: [...a, ...ok, ...sick], batchStartedAt: 40_000 })]);
  assert.equal(step.kind, 'failed');
  assert.equal(step.failure?.instanceId, sick[0].id);
  assert.match(step.failure!.reason, /not healthy \(unhealthy\) within the healthy deadline of 60 s/);
  // Before the deadline it waits, waking at the deadline.
  const waiting = plan([svc({ wanted: 2, update: update({ parallelism: 2, healthyDeadline: 60 }), instances: [...a, ...ok, ...sick], batchStartedAt: 50_000 })]);
  assert.equal(waiting.kind, 'wait');
  assert.equal(waiting.wakeAt, 110_000);
});

test('a new instance its node gave up on fails the rollout at once', () => {
  const dead = fresh(1, { state: 'failed', health: 'none', upSince: null });
  const step = plan([svc({ instances: [...old(4), ...dead], batchStartedAt: 99_000 })]);
  assert.equal(step.kind, 'failed');
  assert.equal(step.failure?.instanceId, dead[0].id);
});

test('a rollback brings the old version back to its count, then stops every new instance', () => {
  const a = old(2);
  const b = fresh(2);
  let step = plan([svc({ wantedFrom: 4, instances: [...a, ...b] })], { mode: 'rollback' });
  assert.deepEqual(step.actions, [{ kind: 'start', service: 'web', side: 'from', count: 2, reason: 'bringing the previous version back' }]);
  const back = old(2).map((i) => ({ ...i, state: 'starting' as const, health: 'starting' as const, upSince: null }));
  step = plan([svc({ wantedFrom: 4, instances: [...a, ...back, ...b], batchStartedAt: 99_000 })], { mode: 'rollback' });
  assert.equal(step.kind, 'wait');
  step = plan([svc({ wantedFrom: 4, instances: [...old(4), ...b] })], { mode: 'rollback' });
  assert.deepEqual(step.actions, [{ kind: 'stop', service: 'web', instanceIds: b.map((i) => i.id), reason: 'rolled back' }]);
  step = plan([svc({ wantedFrom: 4, instances: old(4) })], { mode: 'rollback' });
  assert.equal(step.kind, 'done');
  // An old version that does not come back healthy by the deadline does not keep the rollback from ending.
  step = plan([svc({ wantedFrom: 4, instances: [...a, ...back, ...b], batchStartedAt: 0 })], { mode: 'rollback', now: 400_000 });
  assert.equal(step.actions[0].kind, 'stop');
});

test('a scale in the middle of a rollout changes the count the next step aims at', () => {
  // Scaled from 4 to 6 with two new settled: no old one stops (nothing is above the wanted count), more start.
  let step = plan([svc({ wanted: 6, update: update({ parallelism: 2 }), instances: [...old(2), ...fresh(2)] })]);
  assert.deepEqual(step.actions.map((x) => [x.kind, x.kind === 'start' ? x.count : 0]), [['start', 2]]);
  // Scaled down to 2 with two new settled: every old one stops.
  step = plan([svc({ wanted: 2, update: update({ parallelism: 2 }), instances: [...old(3), ...fresh(2)] })]);
  assert.equal(step.actions[0].kind, 'stop');
  assert.equal(step.actions[0].kind === 'stop' && step.actions[0].instanceIds.length, 3);
  // Scaled below the new ones: the newest go.
  step = plan([svc({ wanted: 1, instances: fresh(2) })]);
  assert.equal(step.actions[0].kind === 'stop' && step.actions[0].reason, 'scaled to 1');
});

test('done once every wanted instance runs the new version and no old one is left', () => {
  assert.equal(plan([svc({ instances: fresh(4) })]).kind, 'done');
  // A service the new version dropped: its old instances stop.
  const step = plan([svc({ wanted: 0, instances: old(2) })]);
  assert.equal(step.actions[0].kind === 'stop' && step.actions[0].instanceIds.length, 2);
  assert.equal(plan([svc({ wanted: 0, instances: [] })]).kind, 'done');
  // A service new in this version: no canary (nothing to compare), straight to batches.
  const added = plan([svc({ wanted: 2, update: update({ canary: 1, parallelism: 1 }), instances: [] })]);
  assert.deepEqual(added.actions.map((x) => x.kind === 'start' && x.count), [1]);
});

test('several services roll out together, each by its own update stanza', () => {
  const web = svc({ service: 'web', update: update({ canary: 1 }), instances: [...old(4), ...fresh(1)] });
  const worker = svc({ service: 'worker', wanted: 2, update: update({ parallelism: 2 }), instances: old(2) });
  // worker acts while web is paused: the step acts.
  let step = plan([web, worker]);
  assert.equal(step.kind, 'act');
  assert.deepEqual(step.actions.map((a) => a.service), ['worker']);
  // worker waiting for health and web paused: the step waits (not paused: something is still moving).
  const workerSettling = { ...worker, instances: [...old(2), ...fresh(2, { state: 'starting', health: 'starting', upSince: null })], batchStartedAt: 99_000 };
  step = plan([web, workerSettling]);
  assert.equal(step.kind, 'wait');
  // worker done, web paused: paused.
  step = plan([web, { ...worker, instances: fresh(2) }]);
  assert.equal(step.kind, 'paused');
  // One failing fails the whole deploy.
  step = plan([web, { ...worker, instances: [...old(2), ...fresh(1, { state: 'failed', upSince: null })] }]);
  assert.equal(step.kind, 'failed');
  assert.equal(step.failure?.service, 'worker');
});

test('instances without a health check count as healthy once running', () => {
  const b = fresh(1, { health: 'none' });
  const step = plan([svc({ wanted: 1, instances: [...old(1), ...b] })]);
  assert.equal(step.actions[0].kind, 'stop');
});
