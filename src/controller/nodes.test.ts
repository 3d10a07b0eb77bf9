import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Node } from '../core/model.ts';
import type { Store } from '../store/store.ts';
import { ControllerState } from './state.ts';
import { NodeLifecycle } from './nodes.ts';

const node = (id: string, lastSeenAt: string): Node => ({
  id, name: id, address: '10.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt, createdAt: lastSeenAt,
});

test('a controller that lost the bus calls no node down for the silence; back, each node gets nodeDownAfterMs again', () => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const state = new ControllerState({ workspaces: [], projects: [], versions: [], instances: [], nodes: [node('n1', new Date(now).toISOString())], unfinishedJobs: [] });
  const saved: string[] = [];
  const store = { saveNode: async (n: Node) => void saved.push(`${n.id} ${n.status}`) } as unknown as Store;
  const nodes = new NodeLifecycle({ state, store, notify: () => {}, refreshRoutes: () => {}, converge: async () => null, now: () => now, nodeDownAfterMs: 30_000 });

  nodes.busLost();
  now += 60_000;
  assert.deepEqual(nodes.markSilentNodesDown(), [], 'deaf: silence says nothing');
  nodes.busBack();
  now += 29_000;
  assert.deepEqual(nodes.markSilentNodesDown(), [], 'a full interval from the reconnect');
  now += 2_000;
  assert.deepEqual(nodes.markSilentNodesDown().map((n) => n.id), ['n1'], 'still silent a full interval after the bus is back: down');
  assert.equal(state.nodes.get('n1')!.status, 'down');
});
