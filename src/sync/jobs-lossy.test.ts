// The controller's jobs drive a real agent only through the state exchanges, over a bus that drops, duplicates and
// reorders them: a deploy's start jobs end when the node reports its instances running, a scale-down's stop jobs when
// it reports them gone, and destroy leaves nothing behind. Real controller, store, API (package downloads) and agent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import type { FastifyInstance } from 'fastify';
import { MemoryBus } from '../bus/memory.ts';
import { LossyBus } from '../bus/lossy.ts';
import type { Job, Manifest } from '../core/model.ts';
import { Agent } from '../agent/agent.ts';
import { Controller } from '../controller/controller.ts';
import { buildApi } from '../controller/api/server.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { alive as isAlive, eventually } from '../../test/support/enjin.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-jobs-lossy-'));
const SEED = Number(process.env.ENJIN_TEST_SEED ?? 11);
const faults = { drop: 0.15, duplicate: 0.2, reorder: 0.3, maxDelayMs: 40 };
const exchanges = (s: string) => s.startsWith('enjin.desired.') || s.startsWith('enjin.state.') || s.startsWith('enjin.resync.');
const wire = new MemoryBus();
const controllerBus = new LossyBus(wire, { seed: SEED, ...faults, affects: exchanges });
const agentBus = new LossyBus(wire, { seed: SEED + 1, ...faults, affects: exchanges });

let store: Store;
let controller: Controller;
let api: FastifyInstance;
let agent: Agent;

before(async () => {
  store = await openStore({ dataDir: join(root, 'controller') });
  controller = await Controller.start({ store, bus: controllerBus, dataDir: join(root, 'controller', 'data'), domain: 'localhost', reconcileIntervalMs: 60_000, drainTimeoutMs: 500, desiredKeepaliveMs: 200 });
  api = await buildApi(controller);
  await api.listen({ host: '127.0.0.1', port: 0 });
  controller.apiUrl = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
  agent = new Agent({ nodeId: 'n1', name: 'n1', bus: agentBus, dataDir: join(root, 'agent'), heartbeatMs: 150, settleMs: 100, portRange: [38100, 38199] });
  await agent.start();
});

after(async () => {
  await agent?.stop({ stopInstances: true }).catch(() => {});
  await api?.close();
  await controller?.stop();
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

/** The shared waiting helper, with this file's argument order and patience. */
const until = <T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 120_000): Promise<T> => eventually(check, what, timeoutMs);

const alive = (pid: number | null | undefined): boolean => !!pid && isAlive(pid);

async function finished(job: Job | null): Promise<Job> {
  assert.ok(job, 'a job tree was started');
  const done = await until(`job ${job.title} to end`, async () => {
    const j = await store.getJob(job.id);
    return j && ['succeeded', 'failed', 'aborted'].includes(j.state) ? j : null;
  });
  const log = async () => (await Promise.all((await store.getJobTree(job.id)).map(async (j) => `${j.title}: ${j.state} ${j.error ?? ''}\n  ${(await store.getJobLog(j.id)).map((l) => l.line).join('\n  ')}`))).join('\n');
  assert.equal(done.state, 'succeeded', await log());
  return done;
}

test('deploy, scale down and destroy converge through desired and current state alone, under loss', async () => {
  await until('the node to report', () => controller.state.nodes.get('n1')?.status === 'ready');
  const src = join(root, 'app');
  mkdirSync(src);
  writeFileSync(join(src, 'README'), 'nothing to see\n');
  const upload = join(root, 'app.tar.gz');
  await tar.c({ gzip: true, cwd: src, file: upload, portable: true }, ['README']);
  const bytes = readFileSync(upload);
  const manifest: Manifest = {
    project: 'shop', prepare: [], env: {},
    services: { worker: { name: 'worker', command: 'exec sleep 300', instances: 3, listens: false, hostnames: [], health: null, env: {}, stopTimeout: 2 } },
  };
  const deployed = await controller.deploy('shop', { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path: upload }, manifest, true, { by: 'test' });
  await finished(deployed.job);
  const rows = controller.state.instancesOf(deployed.project.id);
  assert.equal(rows.length, 3);
  for (const i of rows) {
    assert.equal(i.current?.state, 'running', `${i.id} reported running`);
    assert.ok(alive(i.current?.pid), `${i.id} runs`);
  }
  const pids = new Map(rows.map((i) => [i.id, i.current!.pid!]));

  await finished(await controller.scale(controller.state.projects.get(deployed.project.id)!, { worker: 1 }, 'test'));
  const left = controller.state.instancesOf(deployed.project.id);
  assert.equal(left.length, 1, 'the stopped rows are gone: their node reported them removed');
  assert.equal(left[0].current?.pid, pids.get(left[0].id), 'the one kept is the same process');
  await until('the two stopped processes to be gone', () => [...pids].filter(([id]) => id !== left[0].id).every(([, pid]) => !alive(pid)));

  await finished(await controller.destroy(controller.state.projects.get(deployed.project.id)!));
  assert.equal(controller.state.instancesOf(deployed.project.id).length, 0);
  await until('every process gone', () => [...pids.values()].every((pid) => !alive(pid)));
  // Faults must have hit the exchange (either direction): a busy machine can leave one side with only a dozen messages,
  // too few for a 15 % drop to be sure on each side alone.
  const total = (k: 'dropped' | 'duplicated') => controllerBus.counts[k] + agentBus.counts[k];
  assert.ok(total('dropped') > 0 && total('duplicated') > 0, `faults happened: controller ${JSON.stringify(controllerBus.counts)}, agent ${JSON.stringify(agentBus.counts)}`);
});

test('a stop while the node is down leaves tombstones, and the node confirms them gone when it returns', async () => {
  const src = join(root, 'app2');
  mkdirSync(src);
  writeFileSync(join(src, 'README'), 'another\n');
  const upload = join(root, 'app2.tar.gz');
  await tar.c({ gzip: true, cwd: src, file: upload, portable: true }, ['README']);
  const bytes = readFileSync(upload);
  const manifest: Manifest = {
    project: 'depot', prepare: [], env: {},
    services: { worker: { name: 'worker', command: 'exec sleep 300', instances: 2, listens: false, hostnames: [], health: null, env: {}, stopTimeout: 2 } },
  };
  const deployed = await controller.deploy('depot', { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path: upload }, manifest, true, { by: 'test' });
  await finished(deployed.job);
  const pids = new Map(controller.state.instancesOf(deployed.project.id).map((i) => [i.id, i.current!.pid!]));
  assert.equal(pids.size, 2);

  // The agent goes away, its instances keep running; the controller marks the node down (as its tick does after
  // nodeDownAfterMs without a report).
  await agent.stop({ stopInstances: false });
  await new Promise((r) => setTimeout(r, 200)); // let reports still held by the lossy bus land first
  controller.state.nodes.get('n1')!.status = 'down';

  const stop = await finished(await controller.scale(controller.state.projects.get(deployed.project.id)!, { worker: 0 }, 'test'));
  const tree = await store.getJobTree(stop.id);
  const stopLog = (await Promise.all(tree.filter((j) => j.kind === 'stop').map((j) => store.getJobLog(j.id)))).flat().map((l) => l.line).join('\n');
  assert.match(stopLog, /node n1 is down: worker .* stays listed as stopped until the node returns/);
  const rows = controller.state.instancesOf(deployed.project.id);
  assert.deepEqual(rows.map((i) => i.desired), ['stopped', 'stopped'], 'tombstones');
  for (const pid of pids.values()) assert.ok(alive(pid), 'nobody could stop them yet');

  agent = new Agent({ nodeId: 'n1', name: 'n1', bus: agentBus, dataDir: join(root, 'agent'), heartbeatMs: 150, settleMs: 100, portRange: [38100, 38199] });
  await agent.start();
  await until('the returning node to confirm them gone', () => controller.state.instancesOf(deployed.project.id).length === 0);
  await until('their processes gone', () => [...pids.values()].every((pid) => !alive(pid)));
});
