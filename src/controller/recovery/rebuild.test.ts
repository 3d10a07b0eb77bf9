import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DesiredInstance, NodeInventory } from '../../core/messages.ts';
import type { Manifest } from '../../core/model.ts';
import { ControllerState } from '../state.ts';
import { rebuild, type NodeFindings, type ResolvedVersion } from './rebuild.ts';

const NOW = '2026-11-23T12:00:00.000Z';

function manifest(webInstances: number, command = 'node web.js'): Manifest {
  const service = (name: string, cmd: string, instances: number) => ({ name, command: cmd, instances, listens: name === 'web', hostnames: [], health: null, env: {}, stopTimeout: 10 });
  return { project: 'shop', prepare: [], env: {}, services: { web: service('web', command, webInstances), worker: service('worker', 'node worker.js', 1) } };
}

function desired(instanceId: string, service: string, versionId: string, number: number | undefined, state: 'running' | 'stopped' = 'running'): DesiredInstance {
  return {
    spec: { instanceId, workspace: 'default', project: 'shop', service, versionId, command: 'node web.js', env: number ? { ENJIN_VERSION: String(number) } : {}, listens: true, healthPath: null, startTimeout: 60, stopTimeout: 10 },
    version: { versionId, project: 'shop', sha256: versionId.padEnd(64, '0'), size: 100, prepare: [], env: {}, ...(number ? { number } : {}) },
    desired: state,
  };
}

function node(nodeId: string, rows: DesiredInstance[]): NodeFindings {
  const inventory: NodeInventory = { node: { nodeId, name: nodeId.replace('node_', 'host-'), address: '10.0.0.1', labels: { zone: 'a' }, roles: ['agent', 'router'], compartment: 'dc1' }, desired: rows, versions: [] };
  return { nodeId, publicKey: `key-of-${nodeId}`, inventory };
}

function resolved(versionId: string, number: number | null, m: Manifest): ResolvedVersion {
  return { versionId, project: 'shop', number, sha256: versionId.padEnd(64, '0'), size: 100, manifest: m, createdAt: NOW };
}

const emptyState = () => new ControllerState({ workspaces: [{ id: 'ws_default', name: 'default', createdAt: NOW }], projects: [], versions: [], instances: [], nodes: [], unfinishedJobs: [] });

let ids = 0;
const newId = (p: string) => `${p}_${++ids}`;

test('placements come back as they run: same ids, nodes and versions; the newest version is current; counts that differ from the manifest become scale', () => {
  const state = emptyState();
  const findings = [
    node('node_a', [desired('inst_1', 'web', 'ver_1', 1), desired('inst_2', 'web', 'ver_2', 2), desired('inst_old', 'web', 'ver_1', 1, 'stopped')]),
    node('node_b', [desired('inst_3', 'web', 'ver_2', 2), desired('inst_4', 'worker', 'ver_2', 2)]),
  ];
  const versions = new Map([['ver_1', resolved('ver_1', 1, manifest(2))], ['ver_2', resolved('ver_2', 2, manifest(2))]]);
  const plan = rebuild({ state, findings, versions, now: NOW, newId });
  assert.deepEqual(plan.problems, []);
  assert.deepEqual(plan.nodes.map((n) => [n.id, n.name, n.publicKey, n.roles.join('+'), n.compartment]), [
    ['node_a', 'host-a', 'key-of-node_a', 'agent+router', 'dc1'],
    ['node_b', 'host-b', 'key-of-node_b', 'agent+router', 'dc1'],
  ]);
  assert.equal(plan.projects.length, 1);
  const p = plan.projects[0];
  assert.equal(p.created, true);
  assert.equal(p.project.name, 'shop');
  assert.equal(p.project.workspaceId, 'ws_default');
  assert.equal(p.project.currentVersionId, 'ver_2');
  assert.equal(p.project.routedVersionId, 'ver_2');
  // web: 3 found (manifest says 2) → scale 3; worker: 1 found, as the manifest says → no override.
  assert.deepEqual(p.project.scale, { web: 3 });
  assert.deepEqual(p.versions.map((v) => [v.id, v.number, v.projectId]), [['ver_1', 1, p.project.id], ['ver_2', 2, p.project.id]]);
  // The stopped row is not brought back; the others are, on their nodes.
  assert.deepEqual(p.instances.map((i) => [i.id, i.nodeId, i.versionId, i.service, i.desired]).sort(), [
    ['inst_1', 'node_a', 'ver_1', 'web', 'running'],
    ['inst_2', 'node_a', 'ver_2', 'web', 'running'],
    ['inst_3', 'node_b', 'ver_2', 'web', 'running'],
    ['inst_4', 'node_b', 'ver_2', 'worker', 'running'],
  ]);
});

test('unknown numbers come after the known ones; an instance whose version could not be read is left out and said', () => {
  const state = emptyState();
  const findings = [node('node_a', [desired('inst_1', 'web', 'ver_a', undefined), desired('inst_2', 'web', 'ver_b', 4), desired('inst_3', 'web', 'ver_lost', 5)])];
  const versions = new Map([['ver_a', resolved('ver_a', null, manifest(1))], ['ver_b', resolved('ver_b', 4, manifest(1))]]);
  const plan = rebuild({ state, findings, versions, now: NOW, newId });
  const p = plan.projects[0];
  assert.deepEqual(p.versions.map((v) => [v.id, v.number]), [['ver_a', 5], ['ver_b', 4]]);
  assert.equal(p.project.currentVersionId, 'ver_a');
  assert.deepEqual(p.instances.map((i) => i.id).sort(), ['inst_1', 'inst_2']);
  assert.equal(plan.problems.length, 1);
  assert.match(plan.problems[0], /inst_3 .* ver_lost, whose manifest no node could give; it keeps running/);
});

test('an instance claimed by two nodes is kept on one and the other is said; a late node only adds and raises counts', () => {
  const state = emptyState();
  const versions = new Map([['ver_1', resolved('ver_1', 1, manifest(1))]]);
  const first = rebuild({ state, findings: [node('node_a', [desired('inst_1', 'web', 'ver_1', 1)]), node('node_b', [desired('inst_1', 'web', 'ver_1', 1)])], versions, now: NOW, newId });
  assert.match(first.problems[0], /inst_1 is desired on both node_a and node_b; kept on node_a/);
  assert.deepEqual(first.projects[0].instances.map((i) => i.nodeId), ['node_a']);
  assert.deepEqual(first.projects[0].project.scale, {});

  // Written as recovery.ts would, then a late node shows up with another web instance of the same version.
  const p = first.projects[0];
  state.projects.set(p.project.id, p.project);
  for (const v of p.versions) state.versions.set(v.id, v);
  for (const i of p.instances) state.putInstance(i);
  const late = rebuild({ state, findings: [node('node_c', [desired('inst_1', 'web', 'ver_1', 1), desired('inst_9', 'web', 'ver_1', 1)])], versions: new Map(), now: NOW, newId });
  assert.deepEqual(late.problems, []);
  assert.equal(late.projects.length, 1);
  assert.equal(late.projects[0].created, false);
  assert.equal(late.projects[0].project.id, p.project.id);
  assert.deepEqual(late.projects[0].versions, []);
  // inst_1 is known already: only inst_9 comes, and web's count rises to the two now placed.
  assert.deepEqual(late.projects[0].instances.map((i) => [i.id, i.nodeId]), [['inst_9', 'node_c']]);
  assert.deepEqual(late.projects[0].project.scale, { web: 2 });
});
