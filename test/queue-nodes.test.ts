// The operator's commands against nodes that fail, on a real Controller (PGlite store, MemoryBus) with simulated
// agents: a frozen project gets no replacement for an instance lost with its node until thawed; `destroy --force` and
// `stop --force` complete with a node unreachable, and the node stops what it still runs when it returns.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { parseManifest } from '../src/core/manifest.ts';
import type { Instance, Job, Project } from '../src/core/model.ts';
import { subjects } from '../src/core/messages.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import { cleanup, tempDir } from './support/enjin.ts';
import { SimulatedAgent } from './support/simulated-agent.ts';

const DOWN_AFTER_MS = 30_000;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('freeze, and forced stop and destroy with a node away', () => {
  let dir: string;
  let store: Store;
  let bus: MemoryBus;
  let c: Controller;
  let api: Awaited<ReturnType<typeof buildApi>>;
  let base = '';
  let token = '';
  let skew = 0;
  const agents = new Map<string, SimulatedAgent>();

  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base}${path}`, {
      method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: await res.json() };
  };
  const projectOf = (name: string): Project => c.state.projectByName(c.defaultWorkspace().id, name)!;
  const webOf = (name: string): Instance[] => c.state.instancesOf(projectOf(name).id).filter((i) => i.service === 'web' && i.desired === 'running');
  const heartbeats = async () => {
    const at = c.now();
    for (const a of agents.values()) if (a.connected) a.heartbeat();
    await waitFor('heartbeats', () => [...agents.values()].every((a) => !a.connected || Date.parse(c.state.nodes.get(a.nodeId)?.lastSeenAt ?? '') >= at));
  };
  const tick = async (): Promise<Job[]> => {
    await c.tick();
    return Promise.all(c.jobs.activeRoots().map((r) => c.jobs.wait(r.id)));
  };
  const deploy = async (name: string) => {
    const bytes = Buffer.from(`not a real package: ${name}`);
    const path = c.packages.uploadPath();
    writeFileSync(path, bytes);
    const manifest = parseManifest(`project: ${name}\nservices:\n  web: { command: node server.js, instances: 2 }\n`, 'enjin.yaml');
    const done = await c.deploy(name, { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path }, manifest, true, { by: 'test' });
    assert.equal((await c.jobs.wait(done.job!.id)).state, 'succeeded');
  };

  before(async () => {
    dir = tempDir('queue-nodes');
    store = await openStore({ dataDir: dir });
    bus = new MemoryBus();
    c = await Controller.start({ store, bus, dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 600_000, drainTimeoutMs: 200, nodeDownAfterMs: DOWN_AFTER_MS, now: () => Date.now() + skew });
    api = await buildApi(c);
    await api.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    c.apiUrl = base;
    token = await c.auth.create('test');
    for (const [name, port] of [['alpha', 44_000], ['bravo', 45_000], ['charlie', 46_000]] as const) {
      const a = new SimulatedAgent(bus, `node_${name}`, name, port);
      agents.set(a.nodeId, a);
      a.connect();
    }
    await waitFor('three ready nodes', () => [...c.state.nodes.values()].filter((n) => n.status === 'ready').length === 3);
  });

  after(async () => {
    for (const a of agents.values()) a.disconnect();
    await api?.close();
    await c?.stop();
    await store?.close();
    cleanup(dir);
  });

  test('frozen, an instance lost with its node is not replaced until thawed', async () => {
    await deploy('shop');
    const frozen = await call('POST', '/v1/projects/shop/freeze');
    assert.equal(frozen.status, 200, JSON.stringify(frozen.body));
    assert.equal(frozen.body.project.frozen, true);
    assert.equal((await store.load()).projects.find((p) => p.name === 'shop')?.frozen, true, 'the flag is stored');

    const [lost] = webOf('shop');
    const victim = agents.get(lost.nodeId)!;
    await heartbeats();
    victim.disconnect();
    skew += DOWN_AFTER_MS + 1000;
    await heartbeats();
    const whileFrozen = await tick();
    assert.equal(c.state.nodes.get(victim.nodeId)?.status, 'down');
    assert.deepEqual(whileFrozen.filter((j) => j.tags.project === 'shop'), [], 'no tree for a frozen project');
    const onReady = () => webOf('shop').filter((i) => c.state.nodes.get(i.nodeId)?.status === 'ready');
    assert.equal(onReady().length, 1, 'the lost instance is not replaced while frozen');
    // The reconcile loop's later turns leave it alone too.
    await tick();
    assert.equal(onReady().length, 1);

    const thawed = await call('POST', '/v1/projects/shop/thaw');
    assert.equal(thawed.body.project.frozen, false);
    const afterThaw = await tick();
    assert.ok(afterThaw.some((j) => j.tags.project === 'shop' && j.state === 'succeeded'), 'thawed, the reconciler replaces it');
    assert.equal(onReady().length, 2);

    // Back, the node's old instance is not kept beside its replacement.
    victim.connect();
    await waitFor('the node ready again', () => c.state.nodes.get(victim.nodeId)?.status === 'ready');
    await tick();
    await waitFor('two web instances, no more', () => [...agents.values()].reduce((n, a) => n + [...a.running.values()].filter((r) => r.project === 'shop').length, 0) === 2);
  });

  test('destroy --force completes with a node unreachable; back, the node stops what it still runs', async () => {
    await deploy('gone');
    const instances = webOf('gone');
    const victim = agents.get(instances[0].nodeId)!;
    const left = instances[0].id;
    // Unreachable but not yet called down: without --force the stop would wait on it.
    victim.disconnect();
    const r = await call('DELETE', '/v1/projects/gone?force=true');
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const root = await c.jobs.wait(r.body.job.id);
    assert.equal(root.state, 'succeeded', root.error ?? '');
    assert.equal((await call('GET', '/v1/projects/gone')).status, 404);
    assert.ok(victim.running.has(left), 'the unreachable node still runs it');
    for (const a of agents.values()) if (a !== victim) await waitFor(`${a.name} to stop its instance of gone`, () => ![...a.running.values()].some((x) => x.project === 'gone'));

    victim.connect();
    await waitFor('the returning node stops the forgotten instance', () => !victim.running.has(left));
    assert.ok(victim.events.includes(`stop ${left}`));
    await waitFor('the controller forgets it once the node reports it gone', () => c.changes.leftovers.count() === 0);
  });

  test('stop --force with a node unreachable, then start brings the scale back', async () => {
    await deploy('paused');
    const instances = webOf('paused');
    const victim = agents.get(instances[0].nodeId)!;
    victim.disconnect();
    const stopped = await call('POST', '/v1/projects/paused/stop', { force: true });
    assert.equal(stopped.status, 202, JSON.stringify(stopped.body));
    assert.equal((await c.jobs.wait(stopped.body.job.id)).state, 'succeeded');
    assert.equal(projectOf('paused').scale.web, 0);
    assert.deepEqual(projectOf('paused').stoppedScale, { web: 2 });
    assert.equal(webOf('paused').length, 0);
    // Stopped stays stopped: the reconciler does not bring it back.
    await tick();
    assert.equal(webOf('paused').length, 0);

    victim.connect();
    await waitFor('the returning node stops it', () => ![...victim.running.values()].some((x) => x.project === 'paused'));

    const started = await call('POST', '/v1/projects/paused/start', {});
    assert.equal(started.status, 202, JSON.stringify(started.body));
    assert.equal((await c.jobs.wait(started.body.job.id)).state, 'succeeded');
    assert.equal(webOf('paused').length, 2);
    assert.equal(projectOf('paused').stoppedScale, undefined);
    const again = await call('POST', '/v1/projects/paused/start', {});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'not_stopped');
  });
  test('while a stop waits on an unreachable node, new tasks for the project are refused; stop --force ends that stop', async () => {
    await deploy('halt');
    const victim = agents.get(webOf('halt')[0].nodeId)!;
    victim.disconnect();
    const slow = await call('POST', '/v1/projects/halt/stop', {});
    assert.equal(slow.status, 202, JSON.stringify(slow.body));
    for (const [path, body] of [['/v1/projects/halt/scale', { services: { web: '3' } }], ['/v1/projects/halt/restart', {}], ['/v1/projects/halt/stop', {}], ['/v1/projects/halt/start', {}]] as const) {
      const r = await call('POST', path, body);
      assert.equal(r.status, 409, `${path}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'project_stopping', path);
      assert.match(r.body.error.message, new RegExp(`halt is being stopped by job ${slow.body.job.id}`));
    }
    const forced = await call('POST', '/v1/projects/halt/stop', { force: true });
    assert.equal(forced.status, 202, JSON.stringify(forced.body));
    assert.equal((await c.jobs.wait(slow.body.job.id)).state, 'aborted', 'the waiting stop is ended');
    assert.equal((await c.jobs.wait(forced.body.job.id)).state, 'succeeded');
    assert.deepEqual(projectOf('halt').stoppedScale, { web: 2 }, 'the scale put aside by the first stop is kept');
    victim.connect();
    await waitFor('the returning node stops it', () => ![...victim.running.values()].some((x) => x.project === 'halt'));
  });

  test('a destroy ends the running change and drops the queued ones', async () => {
    await deploy('drop');
    const used = new Set(webOf('drop').map((i) => i.nodeId));
    // The node the third instance goes to takes requests and never answers: the scale that starts it keeps running.
    const victim = [...agents.values()].find((a) => !used.has(a.nodeId))!;
    victim.disconnect();
    const unanswered: Array<(reply: unknown) => void> = [];
    const silent = bus.handle(subjects.agentRpc(victim.nodeId), () => new Promise((resolve) => unanswered.push(resolve)));
    const running = await call('POST', '/v1/projects/drop/scale', { services: { web: '3' } });
    assert.equal(running.status, 202, JSON.stringify(running.body));
    assert.equal(running.body.job.state === 'queued', false);
    const queued = await call('POST', '/v1/projects/drop/scale', { services: { web: '4' } });
    assert.equal(queued.body.job.state, 'queued');
    assert.deepEqual(queued.body.job.queue, { position: 1, behind: running.body.job.id });
    const listed = await call('GET', '/v1/jobs?project=drop&state=queued');
    assert.deepEqual(listed.body.jobs.map((j: { id: string; queue: unknown }) => [j.id, j.queue]), [[queued.body.job.id, { position: 1, behind: running.body.job.id }]]);

    const destroyed = await call('DELETE', '/v1/projects/drop?force=true');
    assert.equal(destroyed.status, 202, JSON.stringify(destroyed.body));
    assert.equal((await c.jobs.wait(running.body.job.id)).state, 'aborted');
    const dropped = await c.jobs.getJob(queued.body.job.id);
    assert.equal(dropped.state, 'aborted');
    assert.match(dropped.error ?? '', /dropped: destroy drop/);
    assert.equal((await c.jobs.wait(destroyed.body.job.id)).state, 'succeeded');
    assert.equal((await call('GET', '/v1/jobs?project=drop&state=queued,waiting,running')).body.jobs.length, 0);
    silent.unsubscribe();
    // Its requests end now rather than at their own (long) timeouts, which would keep this process alive; whoever
    // sent them has given up already (the scale was aborted).
    for (const answer of unanswered) answer(null);
    victim.connect();
    await waitFor('the node back', () => c.state.nodes.get(victim.nodeId)?.status === 'ready');
    await waitFor('nothing of drop left on any node', () => [...agents.values()].every((a) => ![...a.running.values()].some((x) => x.project === 'drop')));
  });
});
