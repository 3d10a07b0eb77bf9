// A node short of disk: a start that cannot be recorded fails cleanly and can be stopped, starts work again once the
// disk is back, and a node below its free-space threshold reports it, warns, and refuses new versions.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import type { EnjinError } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceReport, type InstanceSpec, type NodeStateUpdate, type Notification } from '../core/messages.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-disk-'));
let packages: PackageServer;
const agents = new Set<Agent>();

before(async () => {
  packages = await startPackageServer(root);
});

after(async () => {
  for (const a of agents) await a.stop({ stopInstances: true }).catch(() => {});
  packages?.close();
  rmSync(root, { recursive: true, force: true });
});

let count = 0;
const spec = (versionId: string): InstanceSpec => ({
  instanceId: `disk_${++count}`, workspace: 'acme', project: 'test', service: 'web', versionId, command: 'exec sleep 300', env: {}, listens: false, healthPath: null, startTimeout: 20, stopTimeout: 5,
});

async function startAgent(dataDir: string, opts: Partial<AgentOptions> = {}) {
  const bus = new MemoryBus();
  packages.serve(bus);
  const updates: NodeStateUpdate[] = [];
  const notes: Notification[] = [];
  const instances = new Map<string, InstanceReport>();
  bus.subscribe(subjects.nodeState('disk'), (m) => {
    const u = m.data as NodeStateUpdate;
    updates.push(u);
    if (u.seq === 0) instances.clear();
    for (const i of u.instances) instances.set(i.instanceId, i);
    for (const id of u.removed) instances.delete(id);
  });
  bus.subscribe(subjects.notifications, (m) => notes.push(m.data as Notification));
  const agent = new Agent({ nodeId: 'disk', name: 'disky', bus, dataDir, heartbeatMs: 200, settleMs: 200, portRange: [37000, 37999], ...opts });
  agents.add(agent);
  await agent.start();
  const rpc = <T extends AgentReply>(req: AgentRequest): Promise<T> => bus.request(subjects.agentRpc('disk'), req, { timeoutMs: 60_000 });
  return { agent, rpc, updates, notes, instances };
}

const until = async (what: string, check: () => boolean): Promise<void> => {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

test('a start the agent cannot record fails cleanly, is stopped and forgotten, and starts work once the disk is back', async () => {
  const dataDir = join(root, 'a');
  const h = await startAgent(dataDir);
  await h.rpc({ op: 'prepare', version: packages.version('ver_disk') });
  // A real failure of the file system under the agent: its state file's temporary name is taken by a directory.
  const blocker = join(dataDir, 'state.json.tmp');
  mkdirSync(blocker);
  const doomed = spec('ver_disk');
  await assert.rejects(h.rpc({ op: 'start', instance: doomed }), (e: EnjinError) => {
    assert.equal(e.code, 'agent_state_unwritable');
    assert.match(e.message, /cannot record its instances \(EISDIR/);
    return true;
  });
  await until('the failure reported', () => h.instances.get(doomed.instanceId)?.current.state === 'failed');
  assert.equal(h.instances.get(doomed.instanceId)!.current.pid, null, 'nothing was spawned that the agent could not record');
  assert.ok(h.notes.some((n) => /cannot record its instances/.test(n.message)), 'the operator is told');
  // the controller's cleanup: stopping it works, and it is gone from the node's state
  await h.rpc({ op: 'stop', instanceId: doomed.instanceId });
  await until('the failed instance removed', () => !h.instances.has(doomed.instanceId));
  // the disk is back: the next start works and is on disk
  rmSync(blocker, { recursive: true });
  const next = spec('ver_disk');
  const r = await h.rpc<Extract<AgentReply, { op: 'start' }>>({ op: 'start', instance: next });
  assert.equal(r.report.current.state, 'running');
  const saved = JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')) as { instances: Array<{ spec: { instanceId: string } }> };
  assert.deepEqual(saved.instances.map((i) => i.spec.instanceId), [next.instanceId]);
  await h.agent.stop({ stopInstances: true });
});

test('below its free-space threshold a node reports a low disk, warns once, and refuses new versions with node_disk_full', async () => {
  const dataDir = join(root, 'b');
  // A threshold above any real free space stands in for a full disk.
  const h = await startAgent(dataDir, { minFreeDiskBytes: 2 ** 60 });
  await until('a state update', () => h.updates.length > 2);
  const disk = h.updates.at(-1)!.node.disk!;
  assert.equal(disk.low, true);
  assert.ok(disk.freeBytes > 0 && disk.totalBytes >= disk.freeBytes);
  assert.equal(disk.minFreeBytes, 2 ** 60);
  assert.equal(h.notes.filter((n) => /less than its minimum/.test(n.message)).length, 1, 'one warning, not one per heartbeat');
  await assert.rejects(h.rpc({ op: 'prepare', version: packages.version('ver_full') }), (e: EnjinError) => {
    assert.equal(e.code, 'node_disk_full');
    assert.equal(e.status, 507);
    assert.match(e.message, /node disky has \d+ MiB free for versions and logs, less than its minimum/);
    return true;
  });
  await h.agent.stop({ stopInstances: true });
  // with a threshold it meets, the same node takes the version
  const ok = await startAgent(dataDir, { minFreeDiskBytes: 1 });
  await ok.rpc({ op: 'prepare', version: packages.version('ver_full') });
  assert.equal(ok.updates.at(-1)!.node.disk!.low, false);
  await ok.agent.stop({ stopInstances: true });
});
