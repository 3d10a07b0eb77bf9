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
const node = (id: string, status: Node['status'] = 'ready'): Node => ({ id, name: id, address: '127.0.0.1', labels: {}, status, lastSeenAt: now, createdAt: now });
let seq = 0;
const inst = (service: string, versionId: string, nodeId = 'n1', state: 'running' | 'failed' | 'starting' = 'running', createdAt = now): Instance => ({
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
