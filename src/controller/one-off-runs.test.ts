// How `enjin run` turns its words into a command line, picks the service whose environment it gets, and picks a node:
// one with the build (an instance of it running there), else the least busy ready agent node, which prepares it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Instance, InstanceCurrent, Node, Project, Version } from '../core/model.ts';
import { ControllerState } from './state.ts';
import { chooseNode, commandLine, pickService } from './one-off-runs.ts';

const now = new Date().toISOString();
const project: Project = { id: 'prj', workspaceId: 'ws', name: 'shop', currentVersionId: 'v2', routedVersionId: 'v2', scale: {}, createdAt: now, updatedAt: now };
const manifest = (services: string[]) => ({ services: Object.fromEntries(services.map((s) => [s, { command: 'x' }])) }) as unknown as Version['manifest'];
const v1: Version = { id: 'v1', projectId: 'prj', number: 1, sha256: 'a'.repeat(64), size: 1, manifest: manifest(['web', 'worker']), createdAt: now };
// v2: a config change that runs v1's build
const v2: Version = { ...v1, id: 'v2', number: 2, buildId: 'v1' };
const node = (id: string, extra: Partial<Node> = {}): Node => ({
  id, name: id, address: '127.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now, ...extra,
});
const current = (state: InstanceCurrent['state'], nodeId: string): InstanceCurrent => ({ state, nodeId, pid: 1, host: null, port: null, restarts: 0, lastExit: null, message: null, reportedAt: now });
const instance = (id: string, service: string, versionId: string, nodeId: string, state: InstanceCurrent['state'] = 'running'): Instance => ({
  id, workspaceId: 'ws', projectId: 'prj', service, versionId, nodeId, desired: 'running', createdAt: now, current: current(state, nodeId),
});

function stateWith(nodes: Node[], instances: Instance[]): ControllerState {
  return new ControllerState({ workspaces: [], projects: [project], versions: [v1, v2], instances, nodes, unfinishedJobs: [] } as never);
}

test('one word is a shell command line; several keep their words apart', () => {
  assert.equal(commandLine(['echo $HOME && ls']), 'echo $HOME && ls');
  assert.equal(commandLine(['sh', '-c', 'exit 7']), "sh -c 'exit 7'");
  assert.equal(commandLine(['python', 'manage.py', 'createsuperuser']), 'python manage.py createsuperuser');
  assert.equal(commandLine(['echo', "it's"]), "echo 'it'\\''s'");
  assert.throws(() => commandLine([]), /list of 1 to/);
  assert.throws(() => commandLine('ls' as never), /list of 1 to/);
  assert.throws(() => commandLine(['a\0b']), /NUL/);
  assert.throws(() => commandLine(['  ']), /empty/);
});

test('the service: the one asked for, else web, else the first; an unknown one lists those there are', () => {
  assert.equal(pickService(project, v1, undefined), 'web');
  assert.equal(pickService(project, v1, 'worker'), 'worker');
  assert.equal(pickService(project, { ...v1, manifest: manifest(['clock', 'mail']) }, undefined), 'clock');
  assert.throws(() => pickService(project, v1, 'nope'), (err: Error & { code?: string }) => err.code === 'unknown_service' && /web, worker/.test(err.message));
  assert.throws(() => pickService(project, v1, 'constructor'), /no service "constructor"/);
});

test('the node: one running the build (the service\'s first), else the least busy usable agent, else none', () => {
  // n2 runs a worker of v2 (v1's build), n3 a web of v2: the web's node is preferred for a web run.
  let s = stateWith([node('n1'), node('n2'), node('n3')], [instance('i1', 'worker', 'v2', 'n2'), instance('i2', 'web', 'v2', 'n3')]);
  assert.deepEqual(pick(s, 'web'), { node: 'n3', prepared: true });
  assert.deepEqual(pick(s, 'worker'), { node: 'n2', prepared: true });
  // Only a starting instance, a down node or a draining one: none holds a usable build; the least busy node prepares.
  s = stateWith([node('n1', { status: 'down' }), node('n2', { draining: true }), node('n3'), node('n4')], [
    instance('i1', 'web', 'v2', 'n1'), instance('i2', 'web', 'v2', 'n2'), instance('i3', 'web', 'v2', 'n3', 'starting'),
  ]);
  assert.deepEqual(pick(s, 'web'), { node: 'n4', prepared: false });
  // A router-only node, or one short of disk, takes no run.
  s = stateWith([node('r1', { roles: ['router'] }), node('n1', { disk: { freeBytes: 1, totalBytes: 10, minFreeBytes: 5, low: true } as Node['disk'] })], []);
  assert.equal(chooseNode(s, project, v1, 'web'), null);
});

function pick(s: ControllerState, service: string): { node: string; prepared: boolean } | null {
  const p = chooseNode(s, project, v1, service);
  return p && { node: p.node.id, prepared: p.prepared };
}
