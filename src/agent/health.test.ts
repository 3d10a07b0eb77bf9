// The agent's health checks and restart policies, through InstanceSpecs as a controller sends them: real processes,
// real ports, real probes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type AgentReply, type InstanceReport, type InstanceSpec, type NodeStateUpdate, type Notification } from '../core/messages.ts';
import type { HealthSpec, RestartSpec } from '../core/model.ts';
import { Agent } from './agent.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-health-'));
chmodSync(root, 0o711);
/** where the test tells its apps to fall ill: writable by the apps' user */
const drop = join(root, 'drop');
mkdirSync(drop);
chmodSync(drop, 0o1777);
const node = JSON.stringify(process.execPath);

// Answers /healthz with 200 "ok" until a file named after its pid appears in $SICK_DIR, then with 503.
const APP_JS = `
const http = require('node:http');
const fs = require('node:fs');
http.createServer((req, res) => {
  if (req.url !== '/healthz') return res.end('hello');
  const sick = fs.existsSync(process.env.SICK_DIR + '/sick.' + process.pid);
  res.statusCode = sick ? 503 : 200;
  res.end(sick ? 'sick' : 'ok');
}).listen(Number(process.env.PORT));
process.on('SIGTERM', () => process.exit(0));
`;

let packages: PackageServer;
const agents: Agent[] = [];
const pids = new Set<number>();

before(async () => {
  packages = await startPackageServer(join(root, 'packages'));
});

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

interface Harness {
  bus: MemoryBus;
  reports: Map<string, InstanceReport>;
  /** every report of every instance, in order */
  history: InstanceReport[];
  notifications: Notification[];
  start(spec: InstanceSpec): Promise<InstanceReport>;
  until(what: string, check: () => boolean, timeoutMs?: number): Promise<void>;
}

let nodes = 0;
async function startAgent(): Promise<Harness> {
  const bus = new MemoryBus();
  packages.serve(bus);
  const nodeId = `health${++nodes}`;
  const reports = new Map<string, InstanceReport>();
  const history: InstanceReport[] = [];
  const notifications: Notification[] = [];
  bus.subscribe(subjects.nodeState(nodeId), (m) => {
    for (const r of (m.data as NodeStateUpdate).instances) {
      reports.set(r.instanceId, r);
      history.push(r);
      if (r.current.pid) pids.add(r.current.pid);
    }
  });
  bus.subscribe(subjects.notifications, (m) => notifications.push(m.data as Notification));
  // No backoff override: the services' own restart policies are what is tested.
  const agent = new Agent({ name: nodeId, nodeId, bus, dataDir: join(root, nodeId), heartbeatMs: 60_000, settleMs: 300, baseEnv: { SICK_DIR: drop } });
  agents.push(agent);
  await agent.start();
  const pkg = await packages.add('ver_health', { 'app.cjs': APP_JS });
  await bus.request(subjects.agentRpc(nodeId), { op: 'prepare', version: { versionId: 'ver_health', project: 'shop', sha256: pkg.sha256, size: pkg.size, prepare: [], env: {} } }, { timeoutMs: 120_000 });
  return {
    bus, reports, history, notifications,
    async start(spec) {
      const r = await bus.request<Extract<AgentReply, { op: 'start' }>>(subjects.agentRpc(nodeId), { op: 'start', instance: spec }, { timeoutMs: 120_000 });
      if (r.report.current.pid) pids.add(r.report.current.pid);
      return r.report;
    },
    async until(what, check, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; instances: ${JSON.stringify([...reports.values()].map((i) => i.current))}; notifications: ${JSON.stringify(notifications)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

let instances = 0;
function spec(over: Partial<InstanceSpec> & { health?: HealthSpec | null; restart?: RestartSpec }): InstanceSpec {
  return {
    instanceId: `hinst_${++instances}`, workspace: 'acme', project: 'shop', service: 'web', versionId: 'ver_health',
    command: `exec ${node} app.cjs`, env: {}, listens: true, healthPath: null, startTimeout: 30, stopTimeout: 5, ...over,
  };
}

const quickCheck: HealthSpec = { http: '/healthz', expect: 'ok', startTimeout: 30, interval: 0.2, timeout: 2, retries: 3, grace: 0 };
const policy = (over: Partial<RestartSpec> = {}): RestartSpec => ({ policy: 'always', maxAttempts: 5, window: 300, backoff: { initial: 0.1, max: 0.5 }, ...over });

test('an instance that stops answering its health path turns unhealthy at once, then is restarted (liveness)', async () => {
  const h = await startAgent();
  const s = spec({ health: quickCheck, restart: policy() });
  const first = await h.start(s);
  assert.equal(first.current.state, 'running');
  assert.equal(first.current.health, 'healthy', 'it passed its check at the gate');
  assert.equal(first.current.probe?.ok, true);
  const pid = first.current.pid!;
  writeFileSync(join(drop, `sick.${pid}`), '');
  // Readiness: the first failure is reported as unhealthy, with what the probe saw, before any restart.
  await h.until('unhealthy', () => h.history.some((r) => r.instanceId === s.instanceId && r.current.pid === pid && r.current.health === 'unhealthy'));
  const unhealthy = h.history.find((r) => r.instanceId === s.instanceId && r.current.health === 'unhealthy')!;
  assert.equal(unhealthy.current.state, 'running');
  assert.match(unhealthy.current.probe!.output, /HTTP 503 from \/healthz/);
  // Liveness: `retries` failures in a row restart it.
  await h.until('the restart', () => {
    const c = h.reports.get(s.instanceId)?.current;
    return c?.state === 'running' && c.pid !== pid && c.health === 'healthy';
  });
  assert.equal(h.reports.get(s.instanceId)!.current.restarts, 1);
  const note = h.notifications.find((n) => n.kind === 'probe-failed' && n.instanceId === s.instanceId);
  assert.ok(note, 'a probe-failed notification');
  assert.equal(note.service, 'web');
  assert.match(note.message, /failed 3 health checks in a row \(HTTP 503 from \/healthz: sick\)/);
});

test('failures within grace do not count: the instance stays starting, not unhealthy, and is not restarted', async () => {
  const h = await startAgent();
  // Grace far longer than the test: failures never count.
  const s = spec({ health: { ...quickCheck, grace: 600, retries: 1 }, restart: policy() });
  const first = await h.start(s);
  writeFileSync(join(drop, `sick.${first.current.pid}`), '');
  await h.until('a failed probe within grace', () => h.history.some((r) => r.instanceId === s.instanceId && r.current.probe?.ok === false));
  const seen = h.history.filter((r) => r.instanceId === s.instanceId);
  assert.ok(seen.every((r) => r.current.health !== 'unhealthy' && r.current.pid === first.current.pid), 'never unhealthy nor restarted within grace');
  assert.equal(seen.at(-1)!.current.health, 'starting');
});

test('on-failure: exit 0 finishes the instance; never: a crash fails it; neither is restarted', async () => {
  const h = await startAgent();
  const done = spec({ listens: false, command: 'sleep 0.5; echo work done; exit 0', restart: policy({ policy: 'on-failure' }) });
  await h.start(done);
  await h.until('finished', () => h.reports.get(done.instanceId)?.current.state === 'finished');
  const c = h.reports.get(done.instanceId)!.current;
  assert.equal(c.restarts, 0);
  assert.equal(c.lastExit?.code, 0);
  assert.equal(c.health, 'none');
  const note = h.notifications.find((n) => n.kind === 'instance-exited' && n.instanceId === done.instanceId);
  assert.match(note?.message ?? '', /exited with code 0: finished \(restart policy on-failure\); it is not restarted/);

  const once = spec({ listens: false, command: 'sleep 0.5; echo oops; exit 2', restart: policy({ policy: 'never' }) });
  await h.start(once);
  await h.until('failed', () => /last lines/.test(h.reports.get(once.instanceId)?.current.message ?? ''));
  const f = h.reports.get(once.instanceId)!.current;
  assert.equal(f.state, 'failed');
  assert.equal(f.restarts, 0);
  assert.match(f.message!, /exited with code 2; restart policy never/);
  assert.match(f.message!, /oops/);
});

test('a crash loop backs off, then is marked failed with the last log lines and a notification', async () => {
  const h = await startAgent();
  const s = spec({ listens: false, command: 'echo "boom at $(date +%s%N)"; sleep 0.4; exit 1', restart: policy({ maxAttempts: 2, window: 300 }) });
  await h.start(s);
  await h.until('failed', () => /last lines/.test(h.reports.get(s.instanceId)?.current.message ?? ''));
  const c = h.reports.get(s.instanceId)!.current;
  assert.equal(c.state, 'failed');
  assert.equal(c.restarts, 2, 'restarted max_attempts times, then given up');
  assert.match(c.message!, /restarted 2 times within 300 s \(max_attempts 2\): gave up/);
  assert.match(c.message!, /boom at/);
  assert.ok(h.history.some((r) => r.instanceId === s.instanceId && r.current.state === 'backoff'), 'it waited before each restart');
  const failed = h.notifications.find((n) => n.kind === 'instance-failed' && n.instanceId === s.instanceId);
  assert.ok(failed, 'an instance-failed notification');
  assert.match(failed.message, /boom at/);
});

test('a command health check runs in the instance directory with its environment; a worker becomes healthy', async () => {
  const h = await startAgent();
  const s = spec({
    listens: false, command: 'echo ready > state.txt 2>/dev/null || echo ready > "$HOME/state.txt"; exec sleep 300', env: { PROBE_WORD: 'ready' },
    health: { command: 'grep -q "$PROBE_WORD" state.txt 2>/dev/null || grep -q "$PROBE_WORD" "$HOME/state.txt"', startTimeout: 30, interval: 0.2, timeout: 5, retries: 3, grace: 0 },
    restart: policy(),
  });
  const first = await h.start(s);
  assert.equal(first.current.health, 'starting', 'a worker is starting until its check passes');
  await h.until('healthy', () => h.reports.get(s.instanceId)?.current.health === 'healthy');
  assert.equal(h.reports.get(s.instanceId)!.current.probe?.ok, true);
});
