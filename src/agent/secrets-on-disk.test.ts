// An instance's env (its config values) never reaches the agent's disk in clear, and an agent restarted with no
// controller still starts its instances with their whole env, from its own sealed files; files an earlier agent
// wrote in clear are still read, then sealed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type DesiredStateUpdate, type InstanceReport, type InstanceSpec, type NodeStateUpdate } from '../core/messages.ts';
import { Agent } from './agent.ts';
import { startPackageServer, type PackageServer } from './package-server.test-support.ts';
import { NodeSecrets } from './secrets-at-rest.ts';

const NODE = 'sealer';
const root = mkdtempSync(join(tmpdir(), 'enjin-secrets-on-disk-'));
const dataDir = join(root, 'agent');
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

/** Made once per run, so no file could hold it by chance. */
const SECRET = `sk_live_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2)}`;

const spec: InstanceSpec = {
  instanceId: 'ins_sealed', workspace: 'acme', project: 'test', service: 'web', versionId: 'ver_sealed',
  command: 'exec sleep 600', env: { STRIPE_KEY: SECRET, PLAIN: 'hello' }, listens: false, healthPath: null, startTimeout: 30, stopTimeout: 5,
};

const until = async (what: string, check: () => boolean): Promise<void> => {
  const deadline = Date.now() + 120_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

async function startAgent(opts: { controller: boolean }) {
  const bus = new MemoryBus();
  if (opts.controller) packages.serve(bus);
  const reports = new Map<string, InstanceReport>();
  bus.subscribe(subjects.nodeState(NODE), (m) => {
    const u = m.data as NodeStateUpdate;
    if (u.seq === 0) reports.clear();
    for (const r of u.instances) reports.set(r.instanceId, r);
    for (const id of u.removed) reports.delete(id);
  });
  const agent = new Agent({ nodeId: NODE, name: NODE, bus, dataDir, heartbeatMs: 100, settleMs: 100, portRange: [38300, 38399] });
  agents.add(agent);
  await agent.start();
  const stop = async (stopInstances: boolean) => {
    await agent.stop({ stopInstances });
    agents.delete(agent);
  };
  return { agent, bus, reports, stop };
}

const runningPid = (reports: Map<string, InstanceReport>): number | null => {
  const c = reports.get(spec.instanceId)?.current;
  return c?.state === 'running' && c.pid ? c.pid : null;
};

/** The app process's environment, as the kernel holds it. */
function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean)) {
    const i = entry.indexOf('=');
    env[entry.slice(0, i)] = entry.slice(i + 1);
  }
  return env;
}

/** Every file under the agent's data directory, as bytes, that holds the secret. */
function filesHolding(secret: string): string[] {
  const needle = Buffer.from(secret);
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && readFileSync(p).includes(needle)) found.push(p);
    }
  };
  walk(dataDir);
  return found;
}

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
};

test("an instance's env is sealed in every file the agent keeps, and an agent restarted alone restarts it with its secret", async () => {
  // 1. A controller tells the agent to run the instance.
  const first = await startAgent({ controller: true });
  const update: DesiredStateUpdate = { incarnation: 'ctl-one', seq: 0, instances: [{ spec, version: packages.version(spec.versionId), desired: 'running' }], removed: [] };
  first.bus.publish(subjects.desired(NODE), update);
  await until('the instance running', () => runningPid(first.reports) !== null);
  const pid1 = runningPid(first.reports)!;
  assert.equal(environOf(pid1).STRIPE_KEY, SECRET, 'the app has its secret');
  await until('the desired state saved', () => existsSync(join(dataDir, 'desired.json')));
  assert.ok(existsSync(join(dataDir, 'state.json')));
  assert.deepEqual(filesHolding(SECRET), [], 'no file under the agent holds the secret');
  // the files are not empty of the instance: it is there, its env sealed
  const desired = JSON.parse(readFileSync(join(dataDir, 'desired.json'), 'utf8'));
  assert.equal(desired.format, 2);
  assert.equal(desired.instances[0].spec.instanceId, spec.instanceId);
  assert.match(desired.instances[0].spec.sealedEnv, /^enjin-sealed:v1:/);
  assert.equal(desired.instances[0].spec.env, undefined);
  const state = JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8'));
  assert.match(state.instances[0].spec.sealedEnv, /^enjin-sealed:v1:/);

  // 2. The agent goes with its instance; it comes back with no controller: its local state restarts the instance.
  await first.stop(true);
  await until('the app gone with the agent', () => gone(pid1));
  const second = await startAgent({ controller: false });
  await until('the instance running again, on the agent alone', () => runningPid(second.reports) !== null);
  const pid2 = runningPid(second.reports)!;
  assert.notEqual(pid2, pid1);
  assert.equal(environOf(pid2).STRIPE_KEY, SECRET, 'restarted with its secret');
  assert.equal(environOf(pid2).PLAIN, 'hello');

  // 3. Again, with the local state lost too: only the sealed desired state is left to start it from.
  await second.stop(true);
  await until('the app gone with the agent', () => gone(pid2));
  rmSync(join(dataDir, 'state.json'));
  const third = await startAgent({ controller: false });
  await until('the instance running from the desired state alone', () => runningPid(third.reports) !== null);
  const pid3 = runningPid(third.reports)!;
  assert.equal(environOf(pid3).STRIPE_KEY, SECRET);
  assert.deepEqual(filesHolding(SECRET), [], 'still in no file');
  await third.stop(true);
  await until('the app gone with the agent', () => gone(pid3));
});

test('files an earlier agent wrote with env in clear still restart the instance, and are sealed at once', async () => {
  // What an agent before sealing wrote: format 1, env in clear (made from the sealed files of the test above).
  const secrets = NodeSecrets.beside(join(dataDir, 'state.json'));
  const inClear = (path: string) => {
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.format = 1;
    for (const rec of file.instances) rec.spec = secrets.openSpec(rec.spec, path).spec;
    writeFileSync(path, JSON.stringify(file), { mode: 0o600 });
  };
  inClear(join(dataDir, 'desired.json'));
  if (existsSync(join(dataDir, 'state.json'))) inClear(join(dataDir, 'state.json'));
  assert.ok(filesHolding(SECRET).length > 0, 'the old files hold it in clear');

  const agent = await startAgent({ controller: false });
  await until('the instance running from the old files', () => runningPid(agent.reports) !== null);
  const pid = runningPid(agent.reports)!;
  assert.equal(environOf(pid).STRIPE_KEY, SECRET);
  await until('the old files sealed', () => filesHolding(SECRET).length === 0);
  assert.equal(JSON.parse(readFileSync(join(dataDir, 'desired.json'), 'utf8')).format, 2);
  assert.equal(JSON.parse(readFileSync(join(dataDir, 'state.json'), 'utf8')).format, 2);
  await agent.stop(true);
  await until('the app gone with the agent', () => gone(pid));
});
