import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHANGE_RULES, ChangeQueue, ruleFor, type ChangeCategory, type ChangeTicket } from './change-queue.ts';

let n = 0;
const t = (category: ChangeCategory, opts: { services?: string[] | null; project?: string; force?: boolean } = {}): ChangeTicket =>
  ({ id: `job_${++n}`, projectId: opts.project ?? 'p', category, services: opts.services ?? null, force: opts.force });

test('the rules table covers every pair, and only the listed exceptions differ from "queue, ended by a stop"', () => {
  const all: ChangeCategory[] = ['rollout', 'rolling', 'scale', 'restart', 'start', 'stop', 'destroy', 'reconcile'];
  for (const running of all) for (const incoming of all) assert.ok(CHANGE_RULES[running][incoming], `${running} × ${incoming}`);
  assert.equal(ruleFor(t('rolling'), t('scale')), 'beside', 'a scale runs beside a rollout that re-plans');
  assert.equal(ruleFor(t('rollout'), t('scale')), 'queue', 'but waits for a rollout planned whole');
  assert.equal(ruleFor(t('scale'), t('stop')), 'end');
  assert.equal(ruleFor(t('rollout'), t('destroy')), 'end');
  assert.equal(ruleFor(t('stop'), t('scale')), 'refuse');
  assert.equal(ruleFor(t('stop'), t('stop')), 'refuse');
  assert.equal(ruleFor(t('stop'), t('stop', { force: true })), 'end', 'a forced stop ends a stop stuck on a node');
  assert.equal(ruleFor(t('stop'), t('destroy')), 'end');
  assert.equal(ruleFor(t('destroy'), t('stop')), 'refuse');
  assert.equal(ruleFor(t('scale'), t('reconcile')), 'skip');
});

test('services matter: a stop of one service leaves changes about others alone', () => {
  assert.equal(ruleFor(t('scale', { services: ['worker'] }), t('stop', { services: ['web'] })), 'beside');
  assert.equal(ruleFor(t('scale', { services: ['web'] }), t('stop', { services: ['web'] })), 'end');
  assert.equal(ruleFor(t('rollout'), t('stop', { services: ['web'] })), 'end', 'a rollout is about every service');
  assert.equal(ruleFor(t('stop', { services: ['web'] }), t('scale', { services: ['worker'] })), 'queue');
  assert.equal(ruleFor(t('stop', { services: ['web'] }), t('scale', { services: ['web', 'worker'] })), 'refuse');
});

test('requests wait first in, first out, and start one by one as trees end', () => {
  const q = new ChangeQueue();
  const deploy = t('rollout');
  assert.deepEqual(q.admit(deploy), { now: true, end: [], drop: [] });
  q.started(deploy);
  const scale = t('scale');
  const a = q.admit(scale);
  assert.ok(!a.now && a.queue && a.behind.id === deploy.id);
  q.enqueue(scale);
  const restart = t('restart');
  const b = q.admit(restart);
  assert.ok(!b.now && b.queue, 'queued behind');
  q.enqueue(restart);
  assert.equal(q.position(scale.id), 1);
  assert.equal(q.position(restart.id), 2);
  assert.equal(q.next('p'), null, 'nothing starts while the deploy runs');
  q.remove(deploy.id);
  assert.equal(q.next('p')?.id, scale.id, 'the first in line goes first');
  q.remove(scale.id);
  q.started(scale);
  assert.equal(q.next('p'), null);
  assert.equal(q.position(restart.id), 1, 'the one behind moved up');
  // Another project is not held up by this one.
  assert.deepEqual(q.admit(t('scale', { project: 'other' })), { now: true, end: [], drop: [] });
});

test('a scale beside a re-planning rollout runs at once, unless something already waits (no overtaking)', () => {
  const q = new ChangeQueue();
  const rolling = t('rolling');
  q.started(rolling);
  assert.equal(q.admit(t('scale')).now, true);
  const restart = t('restart');
  q.enqueue(restart);
  const a = q.admit(t('scale'));
  assert.ok(!a.now && a.queue, 'behind the waiting restart');
});

test('a stop ends the running changes about its services and drops their queued ones; later requests are refused', () => {
  const q = new ChangeQueue();
  const deploy = t('rollout');
  q.started(deploy);
  const scaleWeb = t('scale', { services: ['web'] });
  const scaleWorker = t('scale', { services: ['worker'] });
  q.enqueue(scaleWeb);
  q.enqueue(scaleWorker);
  const stop = t('stop', { services: ['web'] });
  const a = q.admit(stop);
  assert.ok(a.now);
  assert.deepEqual(a.end.map((x) => x.id), [deploy.id]);
  assert.deepEqual(a.drop.map((x) => x.id), [scaleWeb.id], 'the queued change about worker stays');
  q.remove(deploy.id);
  q.remove(scaleWeb.id);
  q.started(stop);
  const refused = q.admit(t('restart', { services: ['web'] }));
  assert.ok(!refused.now && !refused.queue && 'refuse' in refused && refused.refuse.id === stop.id);
  assert.equal(q.next('p'), null, 'the worker scale waits for the stop');
  q.remove(stop.id);
  assert.equal(q.next('p')?.id, scaleWorker.id);
});

test('the reconciler never queues: it runs only when the project is idle', () => {
  const q = new ChangeQueue();
  assert.equal(q.admit(t('reconcile')).now, true);
  const scale = t('scale');
  q.started(scale);
  const a = q.admit(t('reconcile'));
  assert.ok(!a.now && !a.queue && 'skip' in a);
  q.remove(scale.id);
  q.enqueue(t('restart'));
  assert.ok(!q.admit(t('reconcile')).now, 'nor while a change waits');
  assert.equal(q.clear().length, 1, 'stepping down hands back what waited');
  assert.equal(q.busy('p'), false);
});
