// What a node is told of the instances placed on it: specs from the controller's state, and a stopped instance
// still 'running' to its node while routers drain it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Instance, Manifest, Project, Version } from '../../core/model.ts';
import { ControllerState } from '../state.ts';
import { desiredInstancesFor } from './specs.ts';

const at = new Date().toISOString();
const manifest: Manifest = {
  project: 'shop', prepare: ['make'], env: { A: '1' },
  services: { web: { name: 'web', command: 'serve', instances: 1, listens: true, hostnames: [], health: { http: '/up', startTimeout: 7 }, env: { B: '2' }, stopTimeout: 3 } },
};
const project: Project = { id: 'prj', workspaceId: 'ws', name: 'shop', currentVersionId: 'ver', routedVersionId: 'ver', scale: {}, createdAt: at, updatedAt: at };
const version: Version = { id: 'ver', projectId: 'prj', number: 4, sha256: 'ab'.repeat(32), size: 10, manifest, createdAt: at };
const row = (id: string, nodeId: string, extra: Partial<Instance> = {}): Instance => ({ id, workspaceId: 'ws', projectId: 'prj', service: 'web', versionId: 'ver', nodeId, desired: 'running', createdAt: at, current: null, ...extra });

test('a node is told what is placed on it, with specs; a stopped instance stays running to it while it drains', () => {
  const state = new ControllerState({ workspaces: [{ id: 'ws', name: 'acme', createdAt: at }], projects: [project], versions: [version], instances: [], nodes: [], unfinishedJobs: [] });
  const source = { state };
  state.putInstance(row('i1', 'n1'));
  // placed on n2, reported by n1: n1 is not told about it
  state.putInstance(row('i2', 'n2', { current: { state: 'running', nodeId: 'n1', pid: 1, host: 'h', port: 2, restarts: 0, lastExit: null, message: null, reportedAt: at } }));
  state.putInstance(row('i3', 'n1', { desired: 'stopped' }));
  const told = desiredInstancesFor(source, 'n1');
  assert.deepEqual(told.map((d) => [d.spec.instanceId, d.desired]), [['i1', 'running'], ['i3', 'stopped']]);
  const d = told[0];
  assert.equal(d.spec.workspace, 'acme');
  assert.deepEqual(d.spec.env, { A: '1', B: '2', ENJIN_PROJECT: 'shop', ENJIN_SERVICE: 'web', ENJIN_VERSION: '4', ENJIN_INSTANCE: 'i1' });
  assert.equal(d.spec.healthPath, '/up');
  assert.equal(d.spec.startTimeout, 7);
  // The whole check travels, defaults filled, and the restart policy (a listening service's default: always).
  assert.deepEqual(d.spec.health, { http: '/up', startTimeout: 7, interval: 10, timeout: 2, retries: 3, grace: 0 });
  assert.equal(d.spec.restart?.policy, 'always');
  assert.equal(d.version.sha256, version.sha256);

  const changes: string[] = [];
  state.onInstanceChange((id) => changes.push(id));
  state.startDraining('i1');
  state.putInstance(row('i1', 'n1', { desired: 'stopped' }));
  assert.equal(desiredInstancesFor(source, 'n1').find((x) => x.spec.instanceId === 'i1')!.desired, 'running', 'draining: the node keeps it running');
  state.endDraining('i1');
  assert.equal(desiredInstancesFor(source, 'n1').find((x) => x.spec.instanceId === 'i1')!.desired, 'stopped');
  assert.deepEqual(changes, ['i1', 'i1'], 'the end of the drain is a change nodes hear of');
});
