import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { EnjinError } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceReport, type InstanceSpec, type NodeStateUpdate, type Notification, type VersionSpec } from '../core/messages.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';
import { readProcStat } from './drivers/process.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-agent-'));
// As root, apps run as another user, who must pass through here to their version directories.
chmodSync(root, 0o711);
/** where the test's apps leave files for the test to read: they may not write anywhere else outside their directory */
const drop = join(root, 'drop');
mkdirSync(drop);
chmodSync(drop, 0o1777);
const node = JSON.stringify(process.execPath);

// ---- packages, served over the bus as controllers serve them -------------------------------------------------------

let packages: PackageServer;

const SERVER_JS = `
const http = require('node:http');
const delay = Number(process.env.LISTEN_DELAY_MS || 0);
console.log('booting on port ' + process.env.PORT);
setTimeout(() => {
  http.createServer((req, res) => {
    res.statusCode = req.url === '/health' ? 204 : 200;
    res.end('hello from ' + process.pid);
  }).listen(Number(process.env.PORT), () => console.log('listening'));
}, delay);
process.on('SIGTERM', () => process.exit(0));
`;

async function versionSpec(versionId: string, prepare: string[] = [], files: Record<string, string> = { 'server.cjs': SERVER_JS }): Promise<VersionSpec> {
  const pkg = await packages.add(versionId, files);
  return { versionId, project: 'shop', sha256: pkg.sha256, size: pkg.size, prepare, env: { COUNT_FILE: join(drop, `${versionId}.count`) } };
}

before(async () => {
  packages = await startPackageServer(join(root, 'packages'));
});

// ---- agents, and never leaving a process behind ------------------------------------------------------------------

const agents = new Set<Agent>();
const pids = new Set<number>();

after(async () => {
  for (const a of agents) await a.stop({ stopInstances: true }).catch(() => {});
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  packages?.close();
  rmSync(root, { recursive: true, force: true });
});

/** What a controller would know of a node, rebuilt from its state updates, checking their order as it goes. */
class NodeView {
  instances = new Map<string, InstanceReport>();
  updates: NodeStateUpdate[] = [];
  notifications: Notification[] = [];
  incarnation = '';
  seq = -1;
  errors: string[] = [];

  constructor(bus: MemoryBus, nodeId: string) {
    bus.subscribe(subjects.nodeState(nodeId), (m) => this.apply(m.data as NodeStateUpdate));
    bus.subscribe(subjects.notifications, (m) => this.notifications.push(m.data as Notification));
  }

  private apply(u: NodeStateUpdate): void {
    this.updates.push(u);
    if (u.seq === 0) {
      this.incarnation = u.incarnation;
      this.instances = new Map(u.instances.map((i) => [i.instanceId, i]));
    } else {
      if (u.incarnation !== this.incarnation || u.seq !== this.seq + 1) this.errors.push(`got ${u.incarnation}/${u.seq} after ${this.incarnation}/${this.seq}`);
      for (const i of u.instances) this.instances.set(i.instanceId, i);
      for (const id of u.removed) this.instances.delete(id);
    }
    this.seq = u.seq;
    for (const i of u.instances) if (i.current.pid) pids.add(i.current.pid);
  }

  async until(what: string, check: (v: NodeView) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; instances: ${JSON.stringify([...this.instances.values()].map((i) => i.current))}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

interface Harness {
  bus: MemoryBus;
  agent: Agent;
  view: NodeView;
  dataDir: string;
  rpc<T extends AgentReply>(req: AgentRequest, timeoutMs?: number): Promise<T>;
}

let nodes = 0;
async function startAgent(opts: Partial<AgentOptions> & { dataDir?: string; bus?: MemoryBus; nodeId?: string } = {}): Promise<Harness> {
  const bus = opts.bus ?? new MemoryBus();
  if (!opts.bus) packages.serve(bus);
  const nodeId = opts.nodeId ?? `node${++nodes}`;
  const dataDir = opts.dataDir ?? join(root, nodeId);
  const view = new NodeView(bus, nodeId);
  const agent = new Agent({
    name: nodeId, heartbeatMs: 60_000, backoff: { initialMs: 100, maxMs: 1000, resetAfterMs: 30_000 }, settleMs: 300, ...opts, nodeId, bus, dataDir,
  });
  agents.add(agent);
  await agent.start();
  return { bus, agent, view, dataDir, rpc: (req, timeoutMs = 60_000) => bus.request(subjects.agentRpc(nodeId), req, { timeoutMs }) };
}

let instances = 0;
function instanceSpec(versionId: string, over: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    instanceId: `inst_${++instances}`, workspace: 'acme', project: 'shop', service: 'web', versionId,
    command: `exec ${node} server.cjs`, env: {}, listens: true, healthPath: null, startTimeout: 20, stopTimeout: 5, ...over,
  };
}

const alive = (pid: number): boolean => {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
};

async function startInstance(h: Harness, spec: InstanceSpec): Promise<InstanceReport> {
  const r = await h.rpc<Extract<AgentReply, { op: 'start' }>>({ op: 'start', instance: spec });
  if (r.report.current.pid) pids.add(r.report.current.pid);
  return r.report;
}

// ---- prepare ---------------------------------------------------------------------------------------------------------

test('prepare fetches over the bus, unpacks, runs prepare commands once (concurrent calls share the run)', async () => {
  const h = await startAgent();
  const v = await versionSpec('ver_prep', ['echo ran >> "$COUNT_FILE"', 'echo built > built.txt', 'test -z "$PORT"']);
  const [a, b] = await Promise.all([h.rpc<Extract<AgentReply, { op: 'prepare' }>>({ op: 'prepare', version: v }), h.rpc({ op: 'prepare', version: v })]);
  assert.deepEqual(a, b);
  assert.match(a.log, /\$ echo built > built\.txt/);
  await h.rpc({ op: 'prepare', version: v });
  assert.equal(readFileSync(v.env.COUNT_FILE, 'utf8'), 'ran\n', 'the prepare commands ran once');
  assert.equal(packages.fetches(v.sha256), 1, 'the package was fetched once');
  assert.equal(readFileSync(join(h.dataDir, 'versions', 'ver_prep', 'built.txt'), 'utf8'), 'built\n');
  assert.ok(existsSync(join(h.dataDir, 'versions', 'ver_prep', 'server.cjs')));
  const log = await h.rpc<Extract<AgentReply, { op: 'prepare-log' }>>({ op: 'prepare-log', versionId: 'ver_prep' });
  assert.match(log.log, /\$ echo ran/);
  await assert.rejects(h.rpc({ op: 'prepare', version: { ...v, versionId: 'ver_x', sha256: 'f'.repeat(64) } }), (e: EnjinError) => e.code === 'version_fetch_failed' && /not found/.test(e.message));
  await assert.rejects(h.rpc({ op: 'prepare', version: { ...v, versionId: '../escape' } }), (e: EnjinError) => e.code === 'invalid_request');
  await h.agent.stop({ stopInstances: true });
});

test('a failing prepare command is reported with its output, and leaves the version unprepared', async () => {
  const h = await startAgent();
  const v = await versionSpec('ver_bad', ['echo fine', 'echo "something broke" >&2; exit 7', 'echo never']);
  await assert.rejects(h.rpc({ op: 'prepare', version: v }), (e: EnjinError) => {
    assert.equal(e.code, 'prepare_failed');
    assert.equal(e.status, 422);
    assert.match(e.message, /prepare command `echo "something broke" >&2; exit 7` exited with code 7/);
    assert.match(e.message, /something broke/);
    return true;
  });
  assert.equal(existsSync(join(h.dataDir, 'versions', 'ver_bad')), false, 'the version directory is removed');
  const log = await h.rpc<Extract<AgentReply, { op: 'prepare-log' }>>({ op: 'prepare-log', versionId: 'ver_bad' });
  assert.doesNotMatch(log.log, /never/);
  await assert.rejects(startInstance(h, instanceSpec('ver_bad')), (e: EnjinError) => e.code === 'version_not_prepared');
  await h.agent.stop({ stopInstances: true });
});

test('a package whose sha256 does not match is rejected and nothing is unpacked', async () => {
  const h = await startAgent();
  const v = await versionSpec('ver_sha', ['echo ran >> "$COUNT_FILE"']);
  // The controllers serve other bytes under the name: the agent refuses them.
  const wrong = 'a'.repeat(64);
  const { size } = await packages.addMislabelled('ver_sha_wrong', wrong, { 'server.cjs': `${SERVER_JS}\n// other bytes\n` });
  await assert.rejects(h.rpc({ op: 'prepare', version: { ...v, sha256: wrong, size } }), (e: EnjinError) => e.code === 'package_corrupt');
  assert.equal(existsSync(join(h.dataDir, 'versions', 'ver_sha')), false);
  assert.equal(existsSync(v.env.COUNT_FILE), false, 'no prepare command ran');
  await assert.rejects(startInstance(h, instanceSpec('ver_sha')), (e: EnjinError) => e.code === 'version_not_prepared');
  await h.agent.stop({ stopInstances: true });
});

// ---- instances -------------------------------------------------------------------------------------------------------

test('start waits for a late listener, is idempotent, and stop kills it and frees the port', async () => {
  const h = await startAgent({ portRange: [31000, 31999] });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_web') });
  const spec = instanceSpec('ver_web', { env: { LISTEN_DELAY_MS: '1500' } });
  const report = await startInstance(h, spec);
  assert.equal(report.current.state, 'running');
  const { pid, port, host } = report.current;
  assert.ok(pid && port && port >= 31000 && port <= 31999);
  assert.equal(host, '127.0.0.1');
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), `hello from ${pid}`, 'the instance got PORT and listens on it');
  const again = await startInstance(h, spec);
  assert.equal(again.current.pid, pid, 'a second start does not start another process');
  await h.view.until('the running state', (v) => v.instances.get(spec.instanceId)?.current.state === 'running');
  await h.rpc({ op: 'stop', instanceId: spec.instanceId });
  assert.equal(alive(pid), false);
  await h.view.until('the removal', (v) => !v.instances.has(spec.instanceId));
  await h.rpc({ op: 'stop', instanceId: spec.instanceId }); // idempotent
  const logs = await h.rpc<Extract<AgentReply, { op: 'logs' }>>({ op: 'logs', instanceId: spec.instanceId, offset: 0, maxBytes: 10_000 });
  assert.match(logs.data, /booting on port \d+\n\S+Z listening/, 'the log outlives the instance');
  await h.agent.stop({ stopInstances: true });
});

test('an HTTP health path gates readiness; an instance that never listens fails after its startTimeout', async () => {
  const h = await startAgent({ portRange: [32000, 32999] });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_health') });
  const ok = await startInstance(h, instanceSpec('ver_health', { healthPath: '/health', env: { LISTEN_DELAY_MS: '500' } }));
  assert.equal(ok.current.state, 'running');

  const never = instanceSpec('ver_health', { command: 'echo "starting slowly"; exec sleep 300', startTimeout: 2 });
  await assert.rejects(startInstance(h, never), (e: EnjinError) => {
    assert.equal(e.code, 'instance_start_failed');
    assert.match(e.message, /not ready within 2 s/);
    assert.match(e.message, /does not listen on \$PORT \(\d+\), nor on any other TCP port/);
    assert.match(e.message, /starting slowly/, 'the last lines of its log are in the message');
    return true;
  });
  // An app that ignores $PORT is told so, with what it listens on instead.
  const elsewhere = instanceSpec('ver_health', { command: `exec ${node} -e "require('http').createServer().listen(0, '127.0.0.1')"`, startTimeout: 2 });
  await assert.rejects(startInstance(h, elsewhere), (e: EnjinError) => {
    assert.equal(e.code, 'instance_start_failed');
    assert.match(e.message, /does not listen on \$PORT \(\d+\); it listens on 127\.0\.0\.1:\d+ instead/);
    return true;
  });
  await h.view.until('the failed state', (v) => v.instances.get(never.instanceId)?.current.state === 'failed');
  const failed = h.view.instances.get(never.instanceId)!;
  assert.equal(failed.current.pid, null);
  const sleeper = h.view.updates.flatMap((u) => u.instances).find((i) => i.instanceId === never.instanceId && i.current.pid)!.current.pid!;
  assert.equal(alive(sleeper), false, 'the process that never got ready was killed');
  await h.view.until('a notification', (v) => v.notifications.some((n) => n.kind === 'instance-failed' && n.instanceId === never.instanceId));

  // an exit before readiness fails at once, with the exit code
  const crash = instanceSpec('ver_health', { command: 'echo "bad config"; exit 3', startTimeout: 60 });
  await assert.rejects(startInstance(h, crash), (e: EnjinError) => e.code === 'instance_start_failed' && /exited with code 3/.test(e.message) && /bad config/.test(e.message));
  await h.agent.stop({ stopInstances: true });
});

test('an instance killed with SIGKILL is restarted with backoff, and its restarts are counted', async () => {
  const h = await startAgent({ portRange: [33000, 33999] });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_crash') });
  const spec = instanceSpec('ver_crash');
  const first = await startInstance(h, spec);
  const pid = first.current.pid!;
  process.kill(pid, 'SIGKILL');
  await h.view.until('the backoff state', (v) => v.updates.some((u) => u.instances.some((i) => i.instanceId === spec.instanceId && i.current.state === 'backoff')));
  await h.view.until('the restart', (v) => {
    const c = v.instances.get(spec.instanceId)?.current;
    return c?.state === 'running' && c.pid !== pid;
  });
  const now = h.view.instances.get(spec.instanceId)!.current;
  assert.equal(now.restarts, 1);
  assert.equal(now.lastExit?.signal, 'SIGKILL');
  assert.equal(now.port, first.current.port, 'the port is kept across restarts');
  await h.view.until('the notification', (v) => v.notifications.some((n) => n.kind === 'instance-exited' && n.instanceId === spec.instanceId));

  // a non-listening instance that keeps dying keeps being restarted (within its policy's max_attempts)
  const flappy = instanceSpec('ver_crash', { listens: false, command: 'sleep 0.5; exit 1' });
  await startInstance(h, flappy);
  await h.view.until('two restarts', (v) => (v.instances.get(flappy.instanceId)?.current.restarts ?? 0) >= 2);
  await h.rpc({ op: 'stop', instanceId: flappy.instanceId });
  await h.agent.stop({ stopInstances: true });
  assert.equal(alive(now.pid!), false);
});

test('stop escalates to SIGKILL for an instance that ignores SIGTERM, and reaches its children', async () => {
  const h = await startAgent();
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_stubborn') });
  const childFile = join(drop, 'stubborn.child');
  const spec = instanceSpec('ver_stubborn', { listens: false, stopTimeout: 1, command: `trap '' TERM; sleep 300 & echo $! > ${childFile}; while :; do sleep 1; done` });
  const r = await startInstance(h, spec);
  const child = Number(readFileSync(childFile, 'utf8'));
  pids.add(child);
  await h.rpc({ op: 'stop', instanceId: spec.instanceId });
  assert.equal(alive(r.current.pid!), false);
  assert.equal(alive(child), false);
  await h.agent.stop({ stopInstances: true });
});

test('logs: read from an offset or the end; the file is capped by rotation and readers restart at 0', async () => {
  const h = await startAgent({ logMaxBytes: 8192 });
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_logs') });
  const spec = instanceSpec('ver_logs', { listens: false, command: 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.01; done' });
  await startInstance(h, spec);
  type Logs = Extract<AgentReply, { op: 'logs' }>;
  const logFile = join(h.dataDir, 'logs', `${spec.instanceId}.log`);
  let last: Logs = await h.rpc<Logs>({ op: 'logs', instanceId: spec.instanceId, offset: 0, maxBytes: 100_000 });
  assert.match(last.data, /line 1\n/);
  const tail = await h.rpc<Logs>({ op: 'logs', instanceId: spec.instanceId, offset: -1, maxBytes: 20 });
  assert.ok(tail.data.length <= 20 && tail.offset === tail.size);
  await h.view.until('a rotation', () => existsSync(`${logFile}.1`));
  // keep reading as a follower would: once the file shrinks below our offset, we are sent back to 0
  let restarted = false;
  const deadline = Date.now() + 30_000;
  while (!restarted && Date.now() < deadline) {
    const next = await h.rpc<Logs>({ op: 'logs', instanceId: spec.instanceId, offset: last.offset, maxBytes: 100_000 });
    if (next.offset < last.offset) restarted = true;
    last = next;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(restarted, 'a reader is sent back to the start after a rotation');
  assert.ok(statSync(logFile).size + statSync(`${logFile}.1`).size <= 8192, 'the log stays within its cap');
  assert.match(readFileSync(logFile, 'utf8'), /^(\d{4}-\d\d-\d\dT[\d:.]+Z (line \d+|\[enjin\] [^\n]*)\n)+$/, 'each file holds whole lines');
  await assert.rejects(h.rpc({ op: 'logs', instanceId: 'inst_nope', offset: 0, maxBytes: 10 }), (e: EnjinError) => e.code === 'not_found');
  await h.agent.stop({ stopInstances: true });
});

// ---- state exchange ----------------------------------------------------------------------------------------------------

test('state updates: seq 0 in full, then seq+1 per change and per heartbeat; a resync resends seq 0 under the same incarnation', async () => {
  const h = await startAgent({ heartbeatMs: 200 });
  await h.view.until('the first update', (v) => v.updates.length > 0);
  assert.equal(h.view.updates[0].seq, 0);
  const incarnation = h.view.updates[0].incarnation;
  await h.rpc({ op: 'prepare', version: await versionSpec('ver_state') });
  const spec = instanceSpec('ver_state', { listens: false, command: 'exec sleep 300' });
  await startInstance(h, spec);
  await h.view.until('a heartbeat', (v) => v.updates.some((u) => u.seq > 0 && !u.instances.length && !u.removed.length));
  await h.view.until('running', (v) => v.instances.get(spec.instanceId)?.current.state === 'running');
  const before = h.view.updates.length;
  h.bus.publish(subjects.resync(h.view.updates[0].node.nodeId), {});
  await h.view.until('the resync', (v) => v.updates.slice(before).some((u) => u.seq === 0));
  const full = h.view.updates.slice(before).find((u) => u.seq === 0)!;
  assert.equal(full.incarnation, incarnation);
  assert.deepEqual(full.instances.map((i) => i.instanceId), [spec.instanceId]);
  await h.rpc({ op: 'stop', instanceId: spec.instanceId });
  await h.view.until('the removal', (v) => v.updates.some((u) => u.removed.includes(spec.instanceId)));
  assert.deepEqual(h.view.errors, [], 'no gap and no foreign incarnation');
  const seqs = h.view.updates.map((u) => u.seq);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] === 0 || seqs[i] === seqs[i - 1] + 1, `seq ${seqs[i]} after ${seqs[i - 1]}`);
  await h.agent.stop({ stopInstances: true });
  // a new run of the agent is a new incarnation
  const h2 = await startAgent({ dataDir: h.dataDir, nodeId: h.view.updates[0].node.nodeId, bus: h.bus });
  await h2.view.until('the first update', (v) => v.updates.length > 0);
  assert.notEqual(h2.view.incarnation, incarnation);
  await h2.agent.stop({ stopInstances: true });
});

// ---- agent restarts ----------------------------------------------------------------------------------------------------

test('a new agent on the same data directory re-adopts running instances (same pid, same port), and restarts dead ones', async () => {
  const bus = new MemoryBus();
  packages.serve(bus);
  const nodeId = 'readopt';
  const h1 = await startAgent({ bus, nodeId, portRange: [34000, 34999] });
  await h1.rpc({ op: 'prepare', version: await versionSpec('ver_adopt') });
  const keep = await startInstance(h1, instanceSpec('ver_adopt'));
  const dies = await startInstance(h1, instanceSpec('ver_adopt'));
  await h1.agent.stop({ stopInstances: false });
  assert.ok(alive(keep.current.pid!) && alive(dies.current.pid!), 'instances outlive an agent that stops without stopping them');
  process.kill(-dies.current.pid!, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));

  const h2 = await startAgent({ bus, nodeId, dataDir: h1.dataDir, portRange: [34000, 34999] });
  await h2.view.until('the full update', (v) => v.updates.some((u) => u.seq === 0));
  const adopted = h2.view.instances.get(keep.instanceId)!.current;
  assert.equal(adopted.state, 'running');
  assert.equal(adopted.pid, keep.current.pid, 'the same process, not a new one');
  assert.equal(adopted.port, keep.current.port);
  assert.equal(adopted.restarts, 0);
  const res = await fetch(`http://127.0.0.1:${adopted.port}/`);
  assert.equal(await res.text(), `hello from ${keep.current.pid}`);
  await h2.view.until('the dead one restarted', (v) => {
    const c = v.instances.get(dies.instanceId)?.current;
    return c?.state === 'running' && c.pid !== dies.current.pid;
  });
  assert.equal(h2.view.instances.get(dies.instanceId)!.current.restarts, 1);

  // the adopted process is watched: a crash is noticed (by polling) and it comes back
  process.kill(-keep.current.pid!, 'SIGKILL');
  await h2.view.until('the adopted one restarted', (v) => {
    const c = v.instances.get(keep.instanceId)?.current;
    return c?.state === 'running' && c.pid !== keep.current.pid && c.restarts === 1;
  });
  const restartedPid = h2.view.instances.get(keep.instanceId)!.current.pid!;

  // a shutdown that stops instances starts them again next time
  await h2.agent.stop({ stopInstances: true });
  assert.equal(alive(restartedPid), false);
  const h3 = await startAgent({ bus, nodeId, dataDir: h1.dataDir, portRange: [34000, 34999] });
  await h3.view.until('both running again', (v) => [keep.instanceId, dies.instanceId].every((id) => v.instances.get(id)?.current.state === 'running'));
  for (const id of [keep.instanceId, dies.instanceId]) {
    const c = h3.view.instances.get(id)!.current;
    assert.ok(alive(c.pid!));
    assert.notEqual(c.pid, restartedPid);
  }
  await h3.agent.stop({ stopInstances: true });
});

test('kill -9 of the agent process loses nothing and duplicates nothing', async () => {
  const dataDir = join(root, 'killed');
  // The agent runs in a child process of its own; it prepares and starts an instance, prints its report, then waits.
  const script = join(root, 'agent-child.mts');
  const v = await versionSpec('ver_kill');
  const spec = instanceSpec('ver_kill');
  writeFileSync(script, `
    import { MemoryBus } from ${JSON.stringify(new URL('../bus/memory.ts', import.meta.url).pathname)};
    import { Agent } from ${JSON.stringify(new URL('./agent.ts', import.meta.url).pathname)};
    import { DiskPackageStore } from ${JSON.stringify(new URL('../controller/packages.ts', import.meta.url).pathname)};
    import { servePackageChunks } from ${JSON.stringify(new URL('../sync/package-chunks.ts', import.meta.url).pathname)};
    const bus = new MemoryBus();
    servePackageChunks(bus, new DiskPackageStore(${JSON.stringify(join(root, 'packages', 'served-packages'))}));
    const agent = new Agent({ nodeId: 'killed', name: 'killed', bus, dataDir: ${JSON.stringify(dataDir)}, portRange: [35000, 35999] });
    await agent.start();
    await bus.request('enjin.agent.killed.rpc', { op: 'prepare', version: ${JSON.stringify(v)} }, { timeoutMs: 60000 });
    const r = await bus.request('enjin.agent.killed.rpc', { op: 'start', instance: ${JSON.stringify(spec)} }, { timeoutMs: 60000 });
    console.log(JSON.stringify(r.report));
  `);
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const deadline = Date.now() + 60_000;
  while (!out.includes('\n') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  assert.ok(out.includes('\n'), 'the agent in the child process started the instance');
  const report = JSON.parse(out) as InstanceReport;
  pids.add(report.current.pid!);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(alive(report.current.pid!), 'the instance outlives its agent');

  const h = await startAgent({ nodeId: 'killed', dataDir, portRange: [35000, 35999] });
  await h.view.until('the full update', (v) => v.updates.some((u) => u.seq === 0));
  const c = h.view.instances.get(spec.instanceId)!.current;
  assert.equal(c.state, 'running');
  assert.equal(c.pid, report.current.pid);
  assert.equal(c.port, report.current.port);
  assert.equal(c.restarts, 0);
  assert.equal(await (await fetch(`http://127.0.0.1:${c.port}/`)).text(), `hello from ${c.pid}`);
  await h.agent.stop({ stopInstances: true });
  assert.equal(alive(c.pid!), false);
});

test('gc removes unpacked versions that are neither kept nor used', async () => {
  const h = await startAgent();
  for (const id of ['ver_gc1', 'ver_gc2', 'ver_gc3']) await h.rpc({ op: 'prepare', version: await versionSpec(id) });
  await startInstance(h, instanceSpec('ver_gc1', { listens: false, command: 'exec sleep 300' }));
  const r = await h.rpc<Extract<AgentReply, { op: 'gc' }>>({ op: 'gc', keep: ['ver_gc3'] });
  assert.deepEqual(r.removed, ['ver_gc2']);
  assert.equal(existsSync(join(h.dataDir, 'versions', 'ver_gc2')), false);
  assert.ok(existsSync(join(h.dataDir, 'versions', 'ver_gc1')));
  await assert.rejects(startInstance(h, instanceSpec('ver_gc2')), (e: EnjinError) => e.code === 'version_not_prepared');
  await h.agent.stop({ stopInstances: true });
});
