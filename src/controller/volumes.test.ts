// The controller's view of volumes over a real in-memory bus, with nodes answering as agents do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type AgentRequest } from '../core/messages.ts';
import type { Node, NodeVolume, Project, Version } from '../core/model.ts';
import { ControllerState } from './state.ts';
import { dropProjectVolumes, listVolumes } from './volumes.ts';

const now = '2026-01-01T00:00:00.000Z';
const vol = (project: string, name: string, sizeBytes: number | null = null): NodeVolume => ({ workspace: 'default', project, name, dir: `/v/${project}/${name}`, sizeBytes, measuredAt: sizeBytes === null ? null : now });
const node = (id: string, o: Partial<Node> = {}): Node => ({
  id, name: id, address: '127.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now, ...o,
});

function setup(nodes: Node[]) {
  const project: Project = { id: 'p', workspaceId: 'w', name: 'shop', currentVersionId: 'v1', routedVersionId: 'v1', scale: {}, createdAt: now, updatedAt: now };
  const version: Version = {
    id: 'v1', projectId: 'p', number: 1, sha256: 'a'.repeat(64), size: 1, createdAt: now,
    manifest: { project: 'shop', prepare: [], env: {}, services: { web: { name: 'web', command: 'x', instances: 1, listens: true, hostnames: [], health: null, env: {}, stopTimeout: 10, volumes: { data: '/data' } } } },
  };
  const state = new ControllerState({ workspaces: [{ id: 'w', name: 'default', createdAt: now }], projects: [project], versions: [version], instances: [], nodes, unfinishedJobs: [] });
  return { state, bus: new MemoryBus() };
}

/** A node that holds `held` and answers as an agent: sizes measured now, drops what it is asked to. */
function answer(bus: MemoryBus, nodeId: string, held: NodeVolume[]): string[] {
  const asked: string[] = [];
  bus.handle(subjects.agentRpc(nodeId), async (data) => {
    const req = data as AgentRequest;
    asked.push(req.op);
    if (req.op === 'volumes') return { op: 'volumes', ok: true, volumes: held.map((v) => ({ ...v, sizeBytes: 4096, measuredAt: now })) };
    if (req.op === 'drop-volumes') {
      const removed = held.filter((v) => v.project === req.project);
      held.splice(0, held.length, ...held.filter((v) => v.project !== req.project));
      return { op: 'drop-volumes', ok: true, removed };
    }
    throw new Error(`unexpected ${req.op}`);
  });
  return asked;
}

test('the listing asks ready nodes to measure, shows a down node as last reported, and names the services using each volume', async () => {
  const { state, bus } = setup([node('n1', { volumes: [vol('shop', 'data')] }), node('n2', { status: 'down', volumes: [vol('old', 'files', 10)] })]);
  answer(bus, 'n1', [vol('shop', 'data')]);
  const all = await listVolumes(state, bus, { measure: true });
  assert.deepEqual(all.map((v) => [v.project, v.name, v.services, v.path, v.node.state, v.sizeBytes, v.env]), [
    ['old', 'files', [], null, 'down', 10, 'ENJIN_VOLUME_FILES'],
    ['shop', 'data', ['web'], '/data', 'ready', 4096, 'ENJIN_VOLUME_DATA'],
  ]);
  assert.equal(state.nodes.get('n1')!.volumes![0].sizeBytes, null, "a reply is shown, the node's report stays the state");
  assert.deepEqual((await listVolumes(state, bus, { project: 'old' })).map((v) => v.name), ['files']);
});

test('removing volumes refuses while a node holding one is down, and removes them on every ready node otherwise', async () => {
  const { state, bus } = setup([node('n1', { volumes: [vol('shop', 'data')] }), node('n2', { status: 'down', volumes: [vol('shop', 'cache')] })]);
  const asked = answer(bus, 'n1', [vol('shop', 'data'), vol('other', 'data')]);
  await assert.rejects(dropProjectVolumes(state, bus, 'default', 'shop', () => {}), (err: Error & { code?: string }) => err.code === 'volume_node_unavailable' && /on n2, which is down: nothing was removed/.test(err.message));
  assert.deepEqual(asked, [], 'nothing was asked of any node');

  state.nodes.get('n2')!.volumes = [];
  const lines: string[] = [];
  const removed = await dropProjectVolumes(state, bus, 'default', 'shop', (l) => lines.push(l));
  assert.deepEqual(removed.map((v) => v.name), ['data']);
  assert.deepEqual(lines, ['removed volume data of shop on n1 (/v/shop/data)']);
});
