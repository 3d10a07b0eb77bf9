// The agent's side of recovering a controller's store from the nodes, with real agents on a MemoryBus: the packages
// it keeps (and who may read them), its inventory, its manifests, serving its kept packages back, and the census.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import type { EnjinError } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type DesiredInstance, type DesiredStateUpdate, type NodeStateUpdate, type VersionSpec } from '../core/messages.ts';
import { BusPackageSource } from '../sync/package-fetch.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-recovery-'));
// As root, apps run as another user, who must pass through here to their version directories.
chmodSync(root, 0o711);
const asRoot = process.getuid?.() === 0;

let packages: PackageServer;
const agents = new Set<Agent>();

before(async () => {
  packages = await startPackageServer(join(root, 'packages'));
});

after(async () => {
  for (const a of agents) await a.stop({ stopInstances: true }).catch(() => {});
  packages?.close();
  rmSync(root, { recursive: true, force: true });
});

interface Harness {
  bus: MemoryBus;
  nodeId: string;
  agent: Agent;
  versionsDir: string;
  states: NodeStateUpdate[];
  rpc<T extends AgentReply>(req: AgentRequest): Promise<T>;
}

let nodes = 0;
async function startAgent(opts: Partial<AgentOptions> = {}): Promise<Harness> {
  const bus = new MemoryBus();
  packages.serve(bus);
  const nodeId = `rnode${++nodes}`;
  const dataDir = join(root, nodeId);
  const states: NodeStateUpdate[] = [];
  bus.subscribe(subjects.nodeState(nodeId), (m) => states.push(m.data as NodeStateUpdate));
  const agent = new Agent({ name: nodeId, heartbeatMs: 60_000, settleMs: 200, ...opts, nodeId, bus, dataDir });
  agents.add(agent);
  await agent.start();
  return { bus, nodeId, agent, versionsDir: join(dataDir, 'versions'), states, rpc: (req) => bus.request(subjects.agentRpc(nodeId), req, { timeoutMs: 60_000 }) };
}

async function versionSpec(versionId: string, files: Record<string, string>, prepare: string[] = [], number?: number): Promise<VersionSpec> {
  const pkg = await packages.add(versionId, files);
  return { versionId, project: 'shop', sha256: pkg.sha256, size: pkg.size, prepare, env: {}, ...(number === undefined ? {} : { number }) };
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('a prepared version keeps its verified package, private to the agent, until the version goes', async () => {
  const h = await startAgent();
  const pkgFile = join(h.versionsDir, '.package-ver_keep.tar.gz');
  // The prepare command runs as the app's user: it must not be able to read the kept package (nor list the directory).
  const probe = asRoot ? ['test -f ../.package-ver_keep.tar.gz', `if cat ../.package-ver_keep.tar.gz > /dev/null 2>&1; then echo "the app read the package" >&2; exit 9; fi`, 'test "$(id -u)" != 0'] : [];
  const v = await versionSpec('ver_keep', { 'enjin.yaml': 'project: shop\n' }, probe, 4);
  await h.rpc({ op: 'prepare', version: v });
  const s = statSync(pkgFile);
  assert.equal(s.mode & 0o777, 0o600);
  assert.equal(s.uid, process.getuid!(), "the agent's, not the app's");
  assert.equal(s.size, v.size);
  assert.equal(sha(readFileSync(pkgFile)), v.sha256);
  const marker = JSON.parse(readFileSync(join(h.versionsDir, 'ver_keep.prepared'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual({ ...marker, at: typeof marker.at }, { sha256: v.sha256, at: 'string', project: 'shop', size: v.size, number: 4 });

  // a failed prepare leaves no package behind
  const bad = await versionSpec('ver_fails', { 'enjin.yaml': 'project: shop\n' }, ['exit 3']);
  await assert.rejects(h.rpc({ op: 'prepare', version: bad }), (e: EnjinError) => e.code === 'prepare_failed');
  assert.equal(existsSync(join(h.versionsDir, '.package-ver_fails.tar.gz')), false);

  // gc takes the package with its version, and an orphaned package (a crash between rename and marker) too
  writeFileSync(join(h.versionsDir, '.package-ver_orphan.tar.gz'), 'left behind');
  const r = await h.rpc<Extract<AgentReply, { op: 'gc' }>>({ op: 'gc', keep: [] });
  assert.deepEqual(r.removed, ['ver_keep']);
  assert.equal(existsSync(pkgFile), false);
  assert.equal(existsSync(join(h.versionsDir, '.package-ver_orphan.tar.gz')), false);
  await h.agent.stop({ stopInstances: true });
});

test('inventory over the bus: the node, its desired state (running and stopped) and its kept versions', async () => {
  const h = await startAgent({ roles: ['agent', 'router'], compartment: 'eu-west', labels: { disk: 'ssd' } });
  const v = await versionSpec('ver_inv', { 'enjin.yaml': 'project: shop\n' }, [], 12);
  await h.rpc({ op: 'prepare', version: v });
  // a version prepared by an older agent: its marker has no project, size or number, and no package was kept
  mkdirSync(join(h.versionsDir, 'ver_older'));
  writeFileSync(join(h.versionsDir, 'ver_older.prepared'), JSON.stringify({ sha256: 'b'.repeat(64), at: '2026-01-01T00:00:00.000Z' }));

  const instance = (instanceId: string, desired: 'running' | 'stopped'): DesiredInstance => ({
    spec: { instanceId, workspace: 'acme', project: 'shop', service: 'worker', versionId: 'ver_inv', command: 'exec sleep 300', env: {}, listens: false, healthPath: null, startTimeout: 10, stopTimeout: 2 },
    version: v,
    desired,
  });
  const update: DesiredStateUpdate = { incarnation: 'ctl-1', seq: 0, instances: [instance('inst_run', 'running'), instance('inst_stopped', 'stopped')], removed: [] };
  h.bus.publish(subjects.desired(h.nodeId), update);
  await until('the instance running', () => h.states.some((u) => u.instances.some((i) => i.instanceId === 'inst_run' && i.current.state === 'running')));

  const { inventory } = await h.rpc<Extract<AgentReply, { op: 'inventory' }>>({ op: 'inventory' });
  assert.equal(inventory.node.nodeId, h.nodeId);
  assert.deepEqual(inventory.node.roles, ['agent', 'router']);
  assert.equal(inventory.node.compartment, 'eu-west');
  assert.deepEqual(inventory.node.labels, { disk: 'ssd' });
  assert.deepEqual(inventory.desired.map((d) => [d.spec.instanceId, d.desired, d.version.number]).sort(), [['inst_run', 'running', 12], ['inst_stopped', 'stopped', 12]]);
  assert.deepEqual(inventory.versions.map(({ preparedAt, ...k }) => ({ ...k, preparedAt: typeof preparedAt })), [
    { versionId: 'ver_inv', project: 'shop', sha256: v.sha256, size: v.size, number: 12, preparedAt: 'string', packageKept: true },
    { versionId: 'ver_older', project: null, sha256: 'b'.repeat(64), size: null, number: null, preparedAt: 'string', packageKept: false },
  ]);
  await h.agent.stop({ stopInstances: true });

  // defaults: a plain agent in no compartment
  const plain = await startAgent();
  const r = await plain.rpc<Extract<AgentReply, { op: 'inventory' }>>({ op: 'inventory' });
  assert.deepEqual([r.inventory.node.roles, r.inventory.node.compartment, r.inventory.desired, r.inventory.versions], [['agent'], null, [], []]);
  await plain.agent.stop({ stopInstances: true });
});

test('version-manifest reads enjin.yaml or the Procfile of an unpacked version, and refuses what the app tampered with', async () => {
  const h = await startAgent();
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_yaml', { 'enjin.yaml': 'project: shop\nservices: {}\n', Procfile: 'web: ignored\n' }) });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_proc', { Procfile: 'web: node server.js\n' }) });
  // the app replaces its manifest with a link to a file of the agent's (as root, through a prepare command)
  const secret = join(root, 'agent-secret.txt');
  writeFileSync(secret, 'agent only\n', { mode: 0o600 });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_link', { 'enjin.yaml': 'project: shop\n' }, [`rm enjin.yaml && ln -s ${secret} enjin.yaml`]) });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_huge', { 'enjin.yaml': 'project: shop\n' }, [`head -c ${1024 * 1024 + 1} /dev/zero > enjin.yaml`]) });

  assert.deepEqual(await h.rpc({ op: 'version-manifest', versionId: 'ver_yaml' }), { op: 'version-manifest', ok: true, file: 'enjin.yaml', text: 'project: shop\nservices: {}\n' });
  assert.deepEqual(await h.rpc({ op: 'version-manifest', versionId: 'ver_proc' }), { op: 'version-manifest', ok: true, file: 'Procfile', text: 'web: node server.js\n' });
  await assert.rejects(h.rpc({ op: 'version-manifest', versionId: 'ver_link' }), (e: EnjinError) => e.code === 'package_unsafe' && /symbolic link/.test(e.message) && !/agent only/.test(e.message));
  await assert.rejects(h.rpc({ op: 'version-manifest', versionId: 'ver_huge' }), (e: EnjinError) => e.code === 'manifest_too_large');
  await assert.rejects(h.rpc({ op: 'version-manifest', versionId: 'ver_never' }), (e: EnjinError) => e.code === 'not_found');
  await assert.rejects(h.rpc({ op: 'version-manifest', versionId: '../ver_yaml' }), (e: EnjinError) => e.code === 'invalid_request');
  // a link the test makes itself, pointing outside the version, is refused the same way
  symlinkSync(secret, join(h.versionsDir, 'ver_proc', 'enjin.yml'));
  await assert.rejects(h.rpc({ op: 'version-manifest', versionId: 'ver_proc' }), (e: EnjinError) => e.code === 'package_unsafe' && /enjin\.yml of version ver_proc/.test(e.message));
  await h.agent.stop({ stopInstances: true });
});

test('a kept package is fetched back from the agent and checks; a package it does not keep is refused', async () => {
  const h = await startAgent();
  // several chunks, so the fetch goes through offsets
  const big = Array.from({ length: 3000 }, (_, i) => `line ${i} ${sha(Buffer.from(String(i)))}\n`).join('');
  const v = await versionSpec('ver_fetch', { 'enjin.yaml': 'project: shop\n', 'data.txt': big });
  await h.rpc({ op: 'prepare', version: v });
  const source = new BusPackageSource(h.bus, { subject: subjects.nodePackageChunk(h.nodeId), servedBy: `node ${h.nodeId}`, chunkBytes: 16 * 1024, attempts: 1 });
  const to = join(root, 'fetched-back.tar.gz');
  await source.fetch({ versionId: 'ver_fetch', sha256: v.sha256, size: v.size }, to);
  assert.equal(sha(readFileSync(to)), v.sha256);
  assert.ok(v.size > 16 * 1024, 'more than one chunk');

  const other = await packages.add('not-kept', { 'enjin.yaml': 'project: other\n' });
  await assert.rejects(source.fetch({ versionId: 'ver_other', ...other }, join(root, 'never.tar.gz')), (e: EnjinError) => e.code === 'version_fetch_failed' && /no longer keeps that package/.test(e.message));
  await h.agent.stop({ stopInstances: true });
  await assert.rejects(source.fetch({ versionId: 'ver_fetch', sha256: v.sha256, size: v.size }, join(root, 'stopped.tar.gz')), (e: EnjinError) => e.code === 'version_fetch_failed', 'a stopped agent serves nothing');
});

test('a census makes the agent publish its full state at once, at most once a second', async () => {
  const h = await startAgent();
  await until('the first full state', () => h.states.length > 0);
  const before = h.states.length;
  const asked = Date.now();
  h.bus.publish(subjects.census, { controllerId: 'ctl-recovering' });
  await until('the census answer', () => h.states.length > before, 500);
  const answer = h.states[before];
  assert.equal(answer.seq, 0, 'a full state, as a resync gets');
  assert.equal(answer.incarnation, h.states[0].incarnation);
  assert.ok(Date.now() - asked < 500);
  // a burst of censuses within the second: one more answer, at the end of it
  for (let i = 0; i < 5; i++) h.bus.publish(subjects.census, { controllerId: `ctl-${i}` });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(h.states.length, before + 1, 'held back within the second');
  await until('the held-back answer', () => h.states.length > before + 1, 2000);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(h.states.length, before + 2, 'one answer for the burst');
  assert.equal(h.states[before + 1].seq, 0);
  await h.agent.stop({ stopInstances: true });
  const after = h.states.length;
  h.bus.publish(subjects.census, { controllerId: 'ctl-late' });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.states.length, after, 'a stopped agent does not answer');
});
