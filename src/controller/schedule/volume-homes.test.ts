// Placement of services with volumes: they go where their data is, and wait for that node rather than move without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconcile } from '../reconcile/reconcile.ts';
import type { Instance, Node, NodeVolume, Project, ServiceSpec, Version } from '../../core/model.ts';

const now = '2026-01-01T00:00:00.000Z';
const svc = (name: string, instances: number, volumes?: Record<string, string>): ServiceSpec => ({
  name, command: 'x', instances, listens: true, hostnames: [], health: null, env: {}, stopTimeout: 10, ...(volumes ? { volumes } : {}),
});
const version = (id: string, services: ServiceSpec[]): Version => ({
  id, projectId: 'p', number: Number(id.slice(1)), sha256: 'a'.repeat(64), size: 1, createdAt: now,
  manifest: { project: 'shop', prepare: [], env: {}, services: Object.fromEntries(services.map((s) => [s.name, s])) },
});
const project = (current: string, routed: string | null = null, scale: Record<string, number> = {}): Project => ({
  id: 'p', workspaceId: 'w', name: 'shop', currentVersionId: current, routedVersionId: routed, scale, createdAt: now, updatedAt: now,
});
const vol = (name: string, project = 'shop'): NodeVolume => ({ workspace: 'default', project, name, dir: `/v/${name}`, sizeBytes: 1, measuredAt: now });
const node = (id: string, o: Partial<Node> = {}): Node => ({
  id, name: id, address: '127.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now, ...o,
});
let seq = 0;
const inst = (service: string, versionId: string, nodeId: string): Instance => ({
  id: `i${++seq}`, workspaceId: 'w', projectId: 'p', service, versionId, nodeId, desired: 'running', createdAt: now,
  current: { state: 'running', nodeId, pid: 1, host: '127.0.0.1', port: 1, restarts: 0, lastExit: null, message: null, reportedAt: now },
});

function run(p: Project, v: Version, instances: Instance[], nodes: Node[]) {
  let n = 0;
  return reconcile({
    project: p, projectId: 'p', version: v, instances, nodes, workspace: 'default',
    instancesOnNode: (id) => instances.filter((i) => i.nodeId === id), newInstanceId: () => `new${++n}`,
  });
}

test('a first placement picks one node for every instance of a service with a volume, and for services sharing it', () => {
  const v1 = version('v1', [svc('web', 3, { data: '/data' }), svc('worker', 2, { data: '/data' }), svc('api', 2)]);
  const plan = run(project('v1'), v1, [], [node('n1'), node('n2')]);
  const on = (s: string) => [...new Set(plan.starts.filter((x) => x.service === s).map((x) => x.nodeId))];
  assert.equal(on('web').length, 1);
  assert.deepEqual(on('worker'), on('web'));
  assert.deepEqual(on('api').sort(), ['n1', 'n2'], 'a service without volumes still spreads');
  assert.notEqual(plan.starts[0].service, 'api', 'services with volumes come first (the release runs on the first node)');
  assert.deepEqual(plan.unplaced, []);
});

test('the node that reports the volume gets the instances, even when another is emptier', () => {
  const v2 = version('v2', [svc('web', 2, { data: '/data' })]);
  const plan = run(project('v2', 'v1'), v2, [inst('web', 'v1', 'n2')], [node('n1'), node('n2', { volumes: [vol('data'), vol('data', 'elsewhere')] })]);
  assert.deepEqual(plan.starts.map((s) => s.nodeId), ['n2', 'n2']);
  // Another project's volume of the same name pins nothing.
  const free = run(project('v2'), v2, [], [node('n1'), node('n2', { volumes: [vol('data', 'elsewhere')] })]);
  assert.equal(new Set(free.starts.map((s) => s.nodeId)).size, 1);
});

test('with no report (a restarted controller), the volume is where its service runs', () => {
  const v2 = version('v2', [svc('web', 1, { data: '/data' })]);
  const plan = run(project('v2', 'v1'), v2, [inst('web', 'v1', 'n2')], [node('n1'), node('n2')]);
  assert.deepEqual(plan.starts.map((s) => s.nodeId), ['n2']);
});

test('a down volume node leaves the instances unplaced with the way out, and its instance is not stopped', () => {
  const v1 = version('v1', [svc('web', 1, { data: '/data' }), svc('api', 1)]);
  const there = inst('web', 'v1', 'n2');
  const plan = run(project('v1', 'v1'), v1, [there], [node('n1'), node('n2', { status: 'down', volumes: [vol('data')] })]);
  assert.deepEqual(plan.stops, []);
  assert.deepEqual(plan.starts.map((s) => s.service), ['api'], 'the other services are placed as usual');
  assert.equal(plan.unplaced.length, 1);
  assert.equal(plan.unplaced[0].error.code, 'volume_node_unavailable');
  assert.match(plan.unplaced[0].error.message, /volume data is on node n2, which is down.*start the agent on n2 again.*enjin nodes rm n2/);
});

test('a draining volume node keeps its instances and says how to get out of it', () => {
  const v2 = version('v2', [svc('web', 1, { data: '/data' })]);
  const old = inst('web', 'v1', 'n2');
  const plan = run(project('v2', 'v1'), v2, [old], [node('n1'), node('n2', { draining: true, volumes: [vol('data')] })]);
  assert.deepEqual(plan.starts, []);
  assert.match(plan.unplaced[0].error.message, /draining.*enjin nodes activate n2/);
});

test('an instance away from its volume (it ran before the service had one) is replaced on the volume node', () => {
  const v1 = version('v1', [svc('web', 2, { data: '/data' })]);
  const away = inst('web', 'v1', 'n1');
  const home = inst('web', 'v1', 'n2');
  const plan = run(project('v1', 'v1'), v1, [away, home], [node('n1'), node('n2', { volumes: [vol('data')] })]);
  assert.deepEqual(plan.stops.map((s) => s.instanceId), [away.id]);
  assert.deepEqual(plan.starts.map((s) => s.nodeId), ['n2']);
});

test('volumes reported by two nodes for one service cannot be placed', () => {
  const v1 = version('v1', [svc('web', 1, { data: '/data', media: '/media' })]);
  const plan = run(project('v1'), v1, [], [node('n1', { volumes: [vol('data')] }), node('n2', { volumes: [vol('media')] })]);
  assert.equal(plan.unplaced[0].error.code, 'volumes_split');
});
