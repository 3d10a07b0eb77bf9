// Prepare commands that daemonize (setsid, a double fork) leave nothing running: not after they succeed, not after
// an abort, an agent stop or an agent restart; and prepare still runs as the app's user with its output logged.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import type { EnjinError } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type VersionSpec } from '../core/messages.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { detectCgroups } from './drivers/cgroup-layout.ts';
import { ProcessDriver, readProcStat } from './drivers/process.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-prepare-'));
// As root, prepare runs as another user, who must pass through here to its version directory and write its pid files.
chmodSync(root, 0o711);
const drop = join(root, 'drop');
mkdirSync(drop);
chmodSync(drop, 0o1777);
const asRoot = process.getuid?.() === 0;
const hasCgroups = new ProcessDriver().tracking !== 'process-tree';
let packages: PackageServer;
const agents = new Set<Agent>();
/** every daemon a test's prepare started, killed in `after` should the test fail */
const daemons = new Set<number>();

before(async () => {
  packages = await startPackageServer(root);
});

after(async () => {
  for (const a of agents) await a.stop({ stopInstances: true }).catch(() => {});
  for (const pid of daemons) {
    try {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  packages?.close();
  rmSync(root, { recursive: true, force: true });
});

const alive = (pid: number): boolean => {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(check: () => T | null | undefined | false, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

let nodes = 0;
async function startAgent(dataDir: string, opts: Partial<AgentOptions> = {}): Promise<{ agent: Agent; rpc: <T extends AgentReply>(req: AgentRequest) => Promise<T> }> {
  const bus = new MemoryBus();
  packages.serve(bus);
  const nodeId = `prep${++nodes}`;
  const agent = new Agent({ nodeId, name: nodeId, bus, dataDir, heartbeatMs: 60_000, settleMs: 300, portRange: [37000, 37999], ...opts });
  agents.add(agent);
  await agent.start();
  return { agent, rpc: (req) => bus.request(subjects.agentRpc(nodeId), req, { timeoutMs: 120_000 }) };
}

/**
 * A prepare step that leaves a daemon: a double fork into a new session (so neither its process group nor its
 * parent links it to the step), which writes its pid to `pidFile` before the step goes on.
 */
const daemonize = (pidFile: string, how = 'setsid'): string =>
  `(${how} sh -c 'echo $$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; exec sleep 1000' > /dev/null 2>&1 &); while [ ! -s ${pidFile} ]; do sleep 0.05; done`;

function daemonPid(pidFile: string): number {
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  daemons.add(pid);
  return pid;
}

const version = (versionId: string, prepare: string[]): VersionSpec => packages.version(versionId, prepare);

test('a daemon started by a prepare step that succeeds is gone once the prepare ends; prepare runs as the app user and is logged', { skip: !hasCgroups && 'needs cgroups (root, cgroups mounted)' }, async () => {
  const h = await startAgent(join(root, 'ok'));
  const pidFile = join(drop, 'ok.pid');
  const reply = await h.rpc<Extract<AgentReply, { op: 'prepare' }>>({ op: 'prepare', version: version('ver_daemon_ok', [daemonize(pidFile), 'echo "prepared as $(id -un)"']) });
  const pid = daemonPid(pidFile);
  assert.equal(alive(pid), false, 'the daemon the prepare step left is killed when the prepare ends');
  assert.match(reply.log, /prepared as \S+/);
  if (asRoot) assert.match(reply.log, /prepared as enjin-apps/, 'prepare runs as the unprivileged app user');
  await h.agent.stop({ stopInstances: true });
});

test('aborting a prepare kills the daemon it started', { skip: !hasCgroups && 'needs cgroups (root, cgroups mounted)' }, async () => {
  const h = await startAgent(join(root, 'abort'));
  const pidFile = join(drop, 'abort.pid');
  const preparing = h.rpc({ op: 'prepare', version: version('ver_daemon_abort', [`${daemonize(pidFile)}; echo waiting; sleep 1000`]) });
  preparing.catch(() => {});
  await eventually(() => existsSync(pidFile), 'the prepare step started its daemon');
  const pid = daemonPid(pidFile);
  assert.ok(alive(pid) && readProcStat(pid)!.sid === pid, 'the daemon runs in a session of its own');
  const cancelled = await h.rpc<Extract<AgentReply, { op: 'cancel-prepare' }>>({ op: 'cancel-prepare', versionId: 'ver_daemon_abort' });
  assert.equal(cancelled.cancelled, true);
  await assert.rejects(preparing, (e: EnjinError) => e.code === 'prepare_failed' && /was killed by SIGKILL/.test(e.message) && /waiting/.test(e.message));
  await eventually(() => !alive(pid), 'the daemon of the aborted prepare is killed');
  await h.agent.stop({ stopInstances: true });
});

test('stopping the agent kills a running prepare and the daemon it started', { skip: !hasCgroups && 'needs cgroups (root, cgroups mounted)' }, async () => {
  const h = await startAgent(join(root, 'stop'));
  const pidFile = join(drop, 'stop.pid');
  const preparing = h.rpc({ op: 'prepare', version: version('ver_daemon_stop', [`${daemonize(pidFile)}; sleep 1000`]) });
  preparing.catch(() => {});
  await eventually(() => existsSync(pidFile), 'the prepare step started its daemon');
  const pid = daemonPid(pidFile);
  await h.agent.stop({ stopInstances: true });
  await eventually(() => !alive(pid), 'the daemon of the prepare is killed on agent stop');
  await assert.rejects(preparing);
});

test('a restarted agent reaps the daemon of a prepare its previous process left running', { skip: !hasCgroups && 'needs cgroups (root, cgroups mounted)' }, async () => {
  const dataDir = join(root, 'restart');
  const first = await startAgent(dataDir);
  const pidFile = join(drop, 'restart.pid');
  const preparing = first.rpc({ op: 'prepare', version: version('ver_daemon_restart', [`${daemonize(pidFile)}; sleep 1000`]) });
  preparing.catch(() => {});
  await eventually(() => existsSync(pidFile), 'the prepare step started its daemon');
  const pid = daemonPid(pidFile);
  // The first agent is not stopped (as if it had died): the next one to start on its data directory finds what
  // its prepare left behind through the record on disk.
  const second = await startAgent(dataDir);
  assert.equal(alive(pid), false, 'the restarted agent killed the leftover daemon before taking work');
  await assert.rejects(preparing);
  await second.agent.stop({ stopInstances: true });
  await first.agent.stop({ stopInstances: true });
});

test('without cgroups, a prepare step\'s background child in its process group is gone once the prepare ends', async () => {
  const h = await startAgent(join(root, 'tree'), { driver: new ProcessDriver({ cgroups: 'off' }) });
  const pidFile = join(drop, 'tree.pid');
  // No setsid: the process group is how the fallback finds it after the step exits.
  const reply = await h.rpc<Extract<AgentReply, { op: 'prepare' }>>({ op: 'prepare', version: version('ver_tree', [`${daemonize(pidFile, '')}; echo "tree as $(id -un)"`]) });
  const pid = daemonPid(pidFile);
  await eventually(() => !alive(pid), 'the background child of the prepare step is killed');
  assert.match(reply.log, /tree as /);
  if (asRoot) assert.match(reply.log, /tree as enjin-apps/);
  await h.agent.stop({ stopInstances: true });
});

test('a prepare step over the memory limit for commands fails with a message that says so', { skip: !(asRoot && detectCgroups('v1')?.memory) && 'no v1 memory cgroup here' }, async () => {
  const h = await startAgent(join(root, 'oom'), { driver: new ProcessDriver({ cgroups: 'v1', commandMemoryLimitBytes: 64 * 1024 * 1024 }) });
  await assert.rejects(h.rpc({ op: 'prepare', version: version('ver_hog', ['echo building; python3 -c "a = bytearray(b\'x\') * (512 * 1024 * 1024)"']) }), (e: EnjinError) => {
    assert.equal(e.code, 'prepare_failed');
    assert.match(e.message, /was killed for going over its memory limit/);
    assert.match(e.message, /building/);
    return true;
  });
  await h.agent.stop({ stopInstances: true });
});

test('an abort that comes before the prepare command has started still kills it and what it starts', { skip: !hasCgroups && 'needs cgroups (root, cgroups mounted)' }, async () => {
  const h = await startAgent(join(root, 'early'));
  const pidFile = join(drop, 'early.pid');
  // Sent back to back: the abort reaches the agent while the version is still being fetched.
  const preparing = h.rpc({ op: 'prepare', version: version('ver_early_abort', [`${daemonize(pidFile)}; echo finished`]) });
  preparing.catch(() => {});
  const cancelled = await h.rpc<Extract<AgentReply, { op: 'cancel-prepare' }>>({ op: 'cancel-prepare', versionId: 'ver_early_abort' });
  assert.equal(cancelled.cancelled, true, 'the prepare under way is cancelled');
  await assert.rejects(preparing, (e: EnjinError) => e.code === 'prepare_failed' && /was killed by SIGKILL/.test(e.message));
  if (existsSync(pidFile)) assert.equal(alive(daemonPid(pidFile)), false, 'what the command started is gone');
  await h.agent.stop({ stopInstances: true });
});
