// Apps that flood their logs: the files stay within their cap, the agent's CPU and memory stay bounded, shutdown
// finishes, and logs carry on across rotations and agent restarts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceSpec, type VersionSpec } from '../core/messages.ts';
import { Agent, type AgentOptions } from './agent.ts';
import { readProcStat } from './drivers/process.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';

/** The time the agent stamps before each line of instance output (log-stamp.ts), as a regular expression. */
const STAMP = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z `;

const root = mkdtempSync(join(tmpdir(), 'enjin-flood-'));
let packages: PackageServer;
const agents = new Set<Agent>();
const pids = new Set<number>();

before(async () => {
  packages = await startPackageServer(root);
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

const version = (versionId: string, prepare: string[] = []): VersionSpec => packages.version(versionId, prepare);

let count = 0;
const spec = (versionId: string, command: string): InstanceSpec => ({
  instanceId: `flood_${++count}`, workspace: 'acme', project: 'noisy', service: 'web', versionId, command, env: {}, listens: false, healthPath: null, startTimeout: 20, stopTimeout: 5,
});

async function startAgent(dataDir: string, opts: Partial<AgentOptions> = {}): Promise<{ agent: Agent; rpc: <T extends AgentReply>(req: AgentRequest) => Promise<T> }> {
  const bus = new MemoryBus();
  packages.serve(bus);
  const agent = new Agent({ nodeId: 'flood', name: 'flood', bus, dataDir, heartbeatMs: 60_000, settleMs: 300, portRange: [36000, 36999], ...opts });
  agents.add(agent);
  await agent.start();
  return { agent, rpc: (req) => bus.request(subjects.agentRpc('flood'), req, { timeoutMs: 120_000 }) };
}

const fileSize = (path: string): number => statSync(path, { throwIfNoEntry: false })?.size ?? 0;
const alive = (pid: number): boolean => {
  const s = readProcStat(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('`yes` and a 200 MB burst: logs stay within their cap, the agent stays cool, lines survive rotation, stop is quick', async () => {
  const dataDir = join(root, 'a');
  const cap = 1024 * 1024;
  const { agent, rpc } = await startAgent(dataDir, { logMaxBytes: cap });
  await rpc({ op: 'prepare', version: version('ver_flood') });
  const yes = spec('ver_flood', 'exec yes');
  const burst = spec('ver_flood', 'head -c 209715200 /dev/zero | tr "\\0" "b" | fold -w 99; sleep 300');
  for (const s of [yes, burst]) {
    const r = await rpc<Extract<AgentReply, { op: 'start' }>>({ op: 'start', instance: s });
    pids.add(r.report.current.pid!);
  }
  const logs = [yes, burst].map((s) => join(dataDir, 'logs', `${s.instanceId}.log`));
  const cpu0 = process.cpuUsage();
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  let worst = 0;
  let maxRss = rss0;
  while (Date.now() - t0 < 6000) {
    for (const l of logs) worst = Math.max(worst, fileSize(l) + fileSize(`${l}.1`));
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
    await sleep(50);
  }
  const cpu = process.cpuUsage(cpu0);
  const share = (cpu.user + cpu.system) / 1000 / (Date.now() - t0);
  assert.ok(worst <= cap, `a log with its rotated file stayed within its cap (${worst} > ${cap})`);
  assert.ok(share < 0.5, `the agent used ${(share * 100).toFixed(0)}% of a core while two apps flooded`);
  assert.ok(maxRss - rss0 < 100 * 1024 * 1024, `the agent's memory grew by ${((maxRss - rss0) / 2 ** 20).toFixed(0)} MB`);
  for (const l of logs) assert.ok(fileSize(`${l}.1`) > 0, 'the logs were rotated');
  // whole lines on both sides of a rotation
  assert.match(readFileSync(`${logs[0]}.1`, 'utf8'), new RegExp(`^(${STAMP}y\n)+$`));
  assert.match(readFileSync(`${logs[1]}.1`, 'utf8'), new RegExp(`^(${STAMP}b{99}\n)+$`));
  // Right after a rotation the live file may still be empty: read until the flood has written to it again.
  let tail = { data: '' };
  for (let i = 0; i < 100 && tail.data === ''; i++) {
    tail = await rpc<Extract<AgentReply, { op: 'logs' }>>({ op: 'logs', instanceId: yes.instanceId, offset: -1, maxBytes: 100 });
    if (tail.data === '') await sleep(50);
  }
  assert.match(tail.data, new RegExp(`(${STAMP}y\n)+$`), 'the logs request reads the live file');
  const stopping = Date.now();
  await agent.stop({ stopInstances: true });
  assert.ok(Date.now() - stopping < 30_000, 'the agent stopped while its apps flooded');
  for (const pid of pids) assert.equal(alive(pid), false);
  for (const l of logs) assert.ok(fileSize(l) + fileSize(`${l}.1`) <= cap);
});

test('after an agent restart the adopted instance logs on, and what it wrote meanwhile is not lost', async () => {
  const dataDir = join(root, 'b');
  const first = await startAgent(dataDir);
  await first.rpc({ op: 'prepare', version: version('ver_count') });
  const s = spec('ver_count', 'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.01; done');
  const r = await first.rpc<Extract<AgentReply, { op: 'start' }>>({ op: 'start', instance: s });
  pids.add(r.report.current.pid!);
  const log = join(dataDir, 'logs', `${s.instanceId}.log`);
  await sleep(500);
  await first.agent.stop({ stopInstances: false });
  agents.delete(first.agent);
  const linesAt = (text: string): number[] => [...text.matchAll(new RegExp(`^${STAMP}line (\\d+)$`, 'gm'))].map((m) => Number(m[1]));
  const before = linesAt(readFileSync(log, 'utf8')).at(-1)!;
  await sleep(1500); // the app writes on into the FIFO with nobody reading
  assert.ok(alive(r.report.current.pid!), 'the app did not die of SIGPIPE while no agent read');
  const second = await startAgent(dataDir);
  const deadline = Date.now() + 30_000;
  let numbers: number[] = [];
  while (Date.now() < deadline) {
    numbers = linesAt(readFileSync(log, 'utf8'));
    if (numbers.at(-1)! > before + 200) break;
    await sleep(100);
  }
  assert.ok(numbers.at(-1)! > before + 200, 'the log carries on after the restart');
  assert.deepEqual(numbers.filter((n, k) => k > 0 && n !== numbers[k - 1] + 1), [], 'no line was lost or repeated across the restart');
  await second.agent.stop({ stopInstances: true });
  assert.equal(alive(r.report.current.pid!), false);
});

test('a flooding prepare command: its log is capped and still ends with its last line; the prepare finishes', async () => {
  const dataDir = join(root, 'c');
  const cap = 512 * 1024;
  const { agent, rpc } = await startAgent(dataDir, { logMaxBytes: cap, logRateBytes: 16 * 1024 * 1024 });
  const r = await rpc<Extract<AgentReply, { op: 'prepare' }>>({ op: 'prepare', version: version('ver_noisy_prepare', ['yes | head -c 20000000; echo prepared-at-last']) });
  assert.match(r.log, /prepared-at-last\n$/);
  const log = join(dataDir, 'versions', 'ver_noisy_prepare.prepare.log');
  assert.ok(fileSize(log) + fileSize(`${log}.1`) <= cap, 'the prepare log stayed within its cap');
  await agent.stop({ stopInstances: true });
});
