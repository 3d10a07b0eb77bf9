import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconcile, isEmptyPlan } from './reconcile.ts';
import { placeInstances } from '../schedule/place.ts';
import type { Instance, Node, Project, ServiceSpec, Version } from '../../core/model.ts';
import type { EnjinError } from '../../core/errors.ts';

const now = '2026-01-01T00:00:00.000Z';
const svc = (name: string, instances: number, listens = true): ServiceSpec => ({ name, command: 'x', instances, listens, hostnames: [], health: null, env: {}, stopTimeout: 10 });
const version = (id: string, services: ServiceSpec[]): Version => ({
  id, projectId: 'p', number: Number(id.slice(1)), sha256: 'a'.repeat(64), size: 1, createdAt: now,
  manifest: { project: 'hello', prepare: [], env: {}, services: Object.fromEntries(services.map((s) => [s.name, s])) },
});
const project = (current: string | null, routed: string | null, scale: Record<string, number> = {}): Project => ({
  id: 'p', workspaceId: 'w', name: 'hello', currentVersionId: current, routedVersionId: routed, scale, createdAt: now, updatedAt: now,
});
const node = (id: string, status: Node['status'] = 'ready'): Node => ({ id, name: id, address: '127.0.0.1', labels: {}, status, draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now });
let seq = 0;
const inst = (service: string, versionId: string, nodeId = 'n1', state: 'running' | 'failed' | 'starting' | 'finished' = 'running', createdAt = now): Instance => ({
  id: `i${++seq}`, workspaceId: 'w', projectId: 'p', service, versionId, nodeId, desired: 'running', createdAt,
  current: { state, nodeId, pid: 1, host: '127.0.0.1', port: 1, restarts: 0, lastExit: null, message: state === 'failed' ? 'gave up' : null, reportedAt: now },
});

function run(p: Project | null, v: Version | null, instances: Instance[], nodes: Node[] = [node('n1'), node('n2')]) {
  let n = 0;
  return reconcile({
    project: p, projectId: 'p', version: v, instances, nodes,
    instancesOnNode: (id) => instances.filter((i) => i.nodeId === id), newInstanceId: () => `new${++n}`,
  });
}

test('a first deploy starts every instance, spread over nodes, and switches routes', () => {
  const v1 = version('v1', [svc('web', 2), svc('worker', 1, false)]);
  const plan = run(project('v1', null), v1, []);
  assert.equal(plan.starts.length, 3);
  assert.deepEqual(plan.starts.filter((s) => s.service === 'web').map((s) => s.nodeId).sort(), ['n1', 'n2']);
  assert.equal(plan.stops.length, 0);
  assert.equal(plan.switchRoutes, true);
});

test('a new version starts new instances and stops every old one', () => {
  const v2 = version('v2', [svc('web', 2)]);
  const plan = run(project('v2', 'v1'), v2, [inst('web', 'v1'), inst('web', 'v1'), inst('worker', 'v1')]);
  assert.equal(plan.starts.length, 2);
  assert.equal(plan.stops.length, 3);
  assert.ok(plan.stops.every((s) => s.versionId === 'v1'));
});

test('scale overrides the manifest; scaling down stops instances that are not serving first', () => {
  const v1 = version('v1', [svc('web', 2)]);
  const starting = inst('web', 'v1', 'n1', 'starting');
  const plan = run(project('v1', 'v1', { web: 1 }), v1, [inst('web', 'v1'), starting]);
  assert.deepEqual(plan.stops.map((s) => s.instanceId), [starting.id]);
  assert.equal(plan.starts.length, 0);
  assert.equal(plan.switchRoutes, false);
});

test('converged state gives an empty plan; a failed instance is replaced', () => {
  const v1 = version('v1', [svc('web', 2)]);
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, [inst('web', 'v1'), inst('web', 'v1')])));
  const failed = inst('web', 'v1', 'n1', 'failed');
  const plan = run(project('v1', 'v1'), v1, [inst('web', 'v1'), failed]);
  assert.deepEqual(plan.stops.map((s) => s.instanceId), [failed.id]);
  assert.equal(plan.starts.length, 1);
});

test('destroying stops everything; no ready node is a clear error', () => {
  const plan = run(null, null, [inst('web', 'v1'), inst('web', 'v1')]);
  assert.equal(plan.stops.length, 2);
  assert.equal(plan.targetVersionId, null);
  assert.throws(() => run(project('v1', null), version('v1', [svc('web', 1)]), [], [node('n1', 'down')]), /no node is ready/);
});

test('placement spreads by service first, then by total load, deterministically', () => {
  assert.deepEqual(placeInstances([
    { nodeId: 'a', ready: true, instances: 5, sameService: 0 },
    { nodeId: 'b', ready: true, instances: 0, sameService: 1 },
    { nodeId: 'c', ready: false, instances: 0, sameService: 0 },
  ], 3), ['a', 'b', 'a']);
});

test('nothing new goes to a node whose disk is low; when every node is low the error says so', () => {
  const disk = (freeBytes: number, low: boolean) => ({ freeBytes, totalBytes: 100 * 2 ** 30, minFreeBytes: 2 ** 30, low });
  assert.deepEqual(placeInstances([
    { nodeId: 'a', ready: true, instances: 0, sameService: 0, disk: disk(2 ** 20, true) },
    { nodeId: 'b', ready: true, instances: 9, sameService: 3, disk: disk(50 * 2 ** 30, false) },
  ], 2), ['b', 'b']);
  assert.throws(
    () => placeInstances([{ nodeId: 'a', name: 'laptop', ready: true, instances: 0, sameService: 0, disk: disk(5 * 2 ** 20, true) }], 1),
    (e: EnjinError) => e.code === 'node_disk_full' && e.status === 507 && /laptop has 5 MiB free/.test(e.message) && /--min-free-disk/.test(e.message),
  );
});

test('an instance left unwanted by a stop that did not finish is stopped again, and does not count as running', () => {
  const v1 = version('v1', [svc('web', 1)]);
  const stuck = { ...inst('web', 'v1'), desired: 'stopped' as const };
  const plan = run(project('v1', 'v1'), v1, [stuck]);
  assert.deepEqual(plan.stops.map((s) => s.instanceId), [stuck.id]);
  assert.equal(plan.starts.length, 1, 'a replacement is placed');
});

// ---- node failure and drain, at scale: simulated nodes, plans applied as the job tree would ----

/** What the cluster looks like once a plan's tree has run: stops gone, starts running where they were placed. */
function applyPlan(instances: Instance[], plan: ReturnType<typeof run>, at = now): Instance[] {
  const stopped = new Set(plan.stops.map((s) => s.instanceId));
  const started = plan.starts.map((s) => ({ ...inst(s.service, s.versionId, s.nodeId, 'running', at), id: s.instanceId }));
  return [...instances.filter((i) => !stopped.has(i.id)), ...started];
}

const fleet = (count: number): Node[] => Array.from({ length: count }, (_, k) => node(`n${String(k).padStart(2, '0')}`));
const perNode = (instances: Instance[], service?: string) => {
  const m = new Map<string, number>();
  for (const i of instances) if (!service || i.service === service) m.set(i.nodeId, (m.get(i.nodeId) ?? 0) + 1);
  return m;
};

test('50 nodes: a first deploy puts at most one instance of a service on a node, then fills the least loaded', () => {
  const nodes = fleet(50);
  const v1 = version('v1', [svc('web', 30), svc('worker', 10, false), svc('api', 60)]);
  const plan = run(project('v1', null), v1, [], nodes);
  assert.equal(plan.starts.length, 100);
  const placed = applyPlan([], plan);
  assert.ok([...perNode(placed, 'web').values()].every((n) => n === 1), 'web: one per node');
  assert.ok([...perNode(placed, 'worker').values()].every((n) => n === 1), 'worker: one per node');
  // 60 api instances on 50 nodes: every node gets one, and the second ones go to the least loaded nodes.
  const api = perNode(placed, 'api');
  assert.equal(api.size, 50);
  assert.equal([...api.values()].filter((n) => n === 2).length, 10);
  const total = perNode(placed);
  assert.ok(Math.max(...total.values()) - Math.min(...total.values()) <= 1, `load stays even: ${[...total.values()].join(',')}`);
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, placed, nodes)), 'converged');
});

test('50 nodes: a node going down has its instances replaced on ready nodes, spread, and stopped with the reason', () => {
  const nodes = fleet(50);
  const v1 = version('v1', [svc('web', 30), svc('worker', 10, false)]);
  let instances = applyPlan([], run(project('v1', null), v1, [], nodes));
  const victim = instances.find((i) => i.service === 'web')!.nodeId;
  const onVictim = instances.filter((i) => i.nodeId === victim);
  nodes.find((n) => n.id === victim)!.status = 'down';

  const plan = run(project('v1', 'v1'), v1, instances, nodes);
  assert.deepEqual(plan.stops.map((s) => [s.instanceId, s.reason]).sort(), onVictim.map((i) => [i.id, `node ${victim} is down`]).sort());
  assert.equal(plan.starts.length, onVictim.length);
  for (const s of plan.starts) {
    assert.notEqual(s.nodeId, victim);
    assert.ok(!instances.some((i) => i.nodeId === s.nodeId && i.service === s.service), `${s.service} replacement goes to a node without one (${s.nodeId})`);
  }
  assert.equal(plan.switchRoutes, false);
  instances = applyPlan(instances, plan);
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, instances, nodes)), 'converged with the node still down');
});

test('50 nodes: draining three nodes moves their instances elsewhere; nothing new lands on them or on a down node', () => {
  const nodes = fleet(50);
  const v1 = version('v1', [svc('web', 45), svc('worker', 5, false)]);
  let instances = applyPlan([], run(project('v1', null), v1, [], nodes));
  const draining = ['n03', 'n17', 'n40'];
  for (const id of draining) nodes.find((n) => n.id === id)!.draining = true;
  nodes.find((n) => n.id === 'n20')!.status = 'down';
  const moving = instances.filter((i) => draining.includes(i.nodeId) || i.nodeId === 'n20');

  const plan = run(project('v1', 'v1'), v1, instances, nodes);
  assert.equal(plan.stops.length, moving.length);
  for (const s of plan.stops) assert.match(s.reason, s.nodeId === 'n20' ? /^node n20 is down$/ : new RegExp(`^node ${s.nodeId} is draining$`));
  assert.equal(plan.starts.length, moving.length);
  assert.ok(plan.starts.every((s) => !draining.includes(s.nodeId) && s.nodeId !== 'n20'));
  instances = applyPlan(instances, plan);
  assert.equal(instances.filter((i) => i.service === 'web').length, 45);
  assert.ok(instances.every((i) => !draining.includes(i.nodeId) && i.nodeId !== 'n20'));

  // Scaling up afterwards places nothing on them either.
  const more = run(project('v1', 'v1', { web: 60 }), v1, instances, nodes);
  assert.equal(more.starts.length, 15);
  assert.ok(more.starts.every((s) => !draining.includes(s.nodeId) && s.nodeId !== 'n20'));
});

test('a stop a down node could not confirm waits for the node (no tree every tick); it is planned again once the node is back', () => {
  const v1 = version('v1', [svc('web', 1)]);
  const nodes = [node('n1'), node('n2', 'down')];
  const tombstone = { ...inst('web', 'v1', 'n2'), desired: 'stopped' as const };
  const serving = inst('web', 'v1', 'n1');
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, [serving, tombstone], nodes)));
  nodes[1].status = 'ready';
  assert.deepEqual(run(project('v1', 'v1'), v1, [serving, tombstone], nodes).stops.map((s) => s.instanceId), [tombstone.id]);
});

test('a node coming back with the instances that were replaced: the excess is stopped, newest first', () => {
  const v1 = version('v1', [svc('web', 2)]);
  const nodes = [node('n1'), node('n2'), node('n3')];
  const a = inst('web', 'v1', 'n1', 'running', '2026-01-01T00:00:00.000Z');
  const replacement = inst('web', 'v1', 'n3', 'running', '2026-01-01T00:01:00.000Z');
  const returned = inst('web', 'v1', 'n2', 'running', '2026-01-01T00:02:00.000Z'); // adopted when n2 reported again
  const plan = run(project('v1', 'v1'), v1, [a, replacement, returned], nodes);
  assert.deepEqual(plan.stops.map((s) => [s.instanceId, s.reason]), [[returned.id, 'scaled to 2']]);
  assert.equal(plan.starts.length, 0);
});

test('placement skips draining and router-only nodes; when every ready node drains the error says how to go on', () => {
  const v1 = version('v1', [svc('web', 2)]);
  const router: Node = { ...node('edge'), roles: ['router'] };
  const plan = run(project('v1', null), v1, [], [{ ...node('n1'), draining: true }, router, node('n2')]);
  assert.deepEqual(plan.starts.map((s) => s.nodeId), ['n2', 'n2']);
  assert.throws(() => run(project('v1', null), v1, [], [{ ...node('n1'), draining: true }, router]), (e: EnjinError) => e.code === 'no_ready_nodes' && /every ready node is draining \(n1\)/.test(e.message) && /enjin nodes activate/.test(e.message));
  assert.throws(() => run(project('v1', null), v1, [], [node('n1', 'down'), router]), (e: EnjinError) => e.code === 'no_ready_nodes' && /no node is ready/.test(e.message));
});

test('with no other node to go to, instances on a down node are neither stopped nor moved: the plan fails as a whole', () => {
  const v1 = version('v1', [svc('web', 1)]);
  assert.throws(() => run(project('v1', 'v1'), v1, [inst('web', 'v1', 'n1')], [node('n1', 'down')]), /no node is ready/);
});

test('a finished instance of the current version is done: neither restarted nor replaced; a new version runs it again', () => {
  const v1 = version('v1', [svc('migrate', 1, false), svc('web', 1)]);
  const finished = inst('migrate', 'v1', 'n1', 'finished');
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, [finished, inst('web', 'v1')])), 'nothing to do');
  // Its node going down does not bring it back either: it is not running anywhere, and should not be.
  assert.ok(isEmptyPlan(run(project('v1', 'v1'), v1, [finished, inst('web', 'v1', 'n2')], [node('n1', 'down'), node('n2')])));
  const v2 = version('v2', [svc('migrate', 1, false), svc('web', 1)]);
  const plan = run(project('v2', 'v1'), v2, [finished, inst('web', 'v1')]);
  assert.ok(plan.stops.some((s) => s.instanceId === finished.id), 'the old version\'s finished row goes');
  assert.deepEqual(plan.starts.map((s) => s.service).sort(), ['migrate', 'web']);
  // Scaling down drops a finished one before one that serves.
  const v3 = version('v3', [svc('job', 2, false)]);
  const done = inst('job', 'v3', 'n1', 'finished');
  const busy = inst('job', 'v3', 'n2');
  assert.deepEqual(run(project('v3', 'v3', { job: 1 }), v3, [busy, done]).stops.map((s) => s.instanceId), [done.id]);
});

test('a failed instance is replaced on another ready node when there is one, else on the same node', () => {
  const v1 = version('v1', [svc('web', 2)]);
  // n1 has fewer instances than n2, so the spread alone would pick it: the failure on n1 sends the replacement to n2.
  const failed = inst('web', 'v1', 'n1', 'failed');
  const other = inst('web', 'v1', 'n2');
  const elsewhere = run(project('v1', 'v1'), v1, [failed, other], [node('n1'), node('n2')]);
  assert.deepEqual(elsewhere.starts.map((s) => [s.nodeId, s.replaces]), [['n2', failed.id]], 'replaced elsewhere, and marked as a replacement');
  // One node only: the replacement goes back where it failed rather than nowhere.
  const alone = run(project('v1', 'v1'), version('v1', [svc('web', 1)]), [inst('web', 'v1', 'n1', 'failed')], [node('n1')]);
  assert.deepEqual(alone.starts.map((s) => s.nodeId), ['n1']);
  // A start a deploy or a scale wants is not a replacement.
  assert.equal(run(project('v1', 'v1', { web: 3 }), v1, [inst('web', 'v1'), inst('web', 'v1', 'n2')]).starts[0].replaces, undefined);
});

test('placement keeps away from the nodes to avoid while another can take the instance', () => {
  const loads = [
    { nodeId: 'a', ready: true, instances: 0, sameService: 0 },
    { nodeId: 'b', ready: true, instances: 9, sameService: 3 },
  ];
  assert.deepEqual(placeInstances(loads, 2, new Set(['a'])), ['b', 'b']);
  assert.deepEqual(placeInstances(loads, 1, new Set(['a', 'b'])), ['a'], 'every node avoided: the spread decides');
});
