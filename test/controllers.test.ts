// Several controllers on one private PostgreSQL: one leads, followers answer reads and refuse writes naming it, a
// killed leader is replaced within 10 s and its running tree ends failed with a reason; and with PostgreSQL stopped
// the leader keeps working from memory, refuses desired-state writes, and writes what it queued once it is back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { hashToken } from '../src/controller/auth/tokens.ts';
import { packDirectory } from '../src/artifact/pack.ts';
import { parseManifest } from '../src/core/manifest.ts';
import type { Instance, Job, Project, Version } from '../src/core/model.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import { alive, cleanup, eventually, ROOT, runCli, tempDir } from './support/enjin.ts';
import { startPostgres, type TestPostgres } from './support/postgres.ts';
import { SimulatedNode } from './support/simulated-node.ts';

const TOKEN = 'enj_controllers_test_token';

interface Running {
  controller: Controller;
  api: Awaited<ReturnType<typeof buildApi>>;
  store: Store;
  bus: MemoryBus;
  base: string;
}

async function startController(databaseUrl: string, dataDir: string, id: string, opts: { reconcileIntervalMs?: number } = {}): Promise<Running> {
  const store = await openStore({ dataDir, databaseUrl });
  const bus = new MemoryBus();
  const controller = await Controller.start({ store, bus, dataDir: join(dataDir, 'controller'), domain: 'localhost', reconcileIntervalMs: opts.reconcileIntervalMs ?? 60_000, controllerId: id });
  const api = await buildApi(controller);
  await api.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
  controller.apiUrl = base;
  controller.ready = true;
  return { controller, api, store, bus, base };
}

async function stopController(r: Running | undefined): Promise<void> {
  if (!r) return;
  await r.api.close();
  await r.controller.stop();
  await r.store.close();
}

async function call(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body instanceof Uint8Array ? { 'content-type': 'application/gzip' } : body ? { 'content-type': 'application/json' } : {}) },
    body: body instanceof Uint8Array ? new Blob([new Uint8Array(body)]) : body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

async function pack(project: string): Promise<Uint8Array> {
  const app = tempDir('pkg');
  writeFileSync(join(app, 'enjin.yaml'), `project: ${project}\nservices:\n  web:\n    command: node s.js\n`);
  writeFileSync(join(app, 's.js'), 'require("http").createServer((q, s) => s.end("hi")).listen(process.env.PORT)\n');
  const { tarball } = await packDirectory(app);
  cleanup(app);
  return new Uint8Array(tarball);
}

describe('controllers on one PostgreSQL', () => {
  let pg: TestPostgres;
  const dirs: string[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    pg = await startPostgres();
  });

  after(async () => {
    for (const child of children) if (child.pid && alive(child.pid)) child.kill('SIGKILL');
    await pg?.stop();
    cleanup(...dirs);
  });

  /** A controller in its own process, to be killed with SIGKILL as a crashed host would be. */
  async function startPeer(databaseUrl: string, id: string): Promise<{ child: ChildProcess; id: string; api: string }> {
    const dir = tempDir('peer');
    dirs.push(dir);
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/support/controller-peer.ts'), databaseUrl, dir, id], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const line = await new Promise<string>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the controller peer exited (${code}) before it was ready:\n${stderr}`)));
    });
    return { child, ...JSON.parse(line) };
  }

  test('one leads; a follower refuses writes naming it; kill -9 of the leader: the follower leads within 10 s and fails its tree with a reason', async () => {
    const url = await pg.createDatabase();
    const dir = tempDir('follower');
    dirs.push(dir);
    // The token both controllers will know, written as `enjin` writes it: only its hash.
    const seed = await openStore({ dataDir: dir, databaseUrl: url });
    await seed.insertToken({ id: 'tok_test', name: 'test', hash: hashToken(TOKEN), workspaceId: null, createdAt: new Date().toISOString() });
    await seed.close();

    const leader = await startPeer(url, 'ctl_a');
    let follower: Running | undefined;
    try {
      let cluster = await call(leader.api, 'GET', '/v1/cluster');
      assert.equal(cluster.status, 200);
      assert.deepEqual(cluster.body.self, { id: 'ctl_a', apiUrl: leader.api, leader: true });

      follower = await startController(url, dir, 'ctl_b');
      assert.equal(follower.controller.leadership.leading, false, 'the lock is held: the second controller follows');
      cluster = await eventually(async () => {
        const c = await call(follower!.base, 'GET', '/v1/cluster');
        return c.body.leader?.id === 'ctl_a' && c.body.leader.apiUrl === leader.api ? c : null;
      }, 'the follower names the leader', 15_000);
      assert.equal(cluster.body.self.leader, false);
      assert.deepEqual(new Set(cluster.body.controllers.map((c: { id: string }) => c.id)), new Set(['ctl_a', 'ctl_b']));
      assert.equal((await fetch(`${follower.base}/healthz`)).status, 200, 'a follower can serve: healthz is 200');

      // A deploy on the leader: its simulated node never answers, so the tree keeps running.
      const deployed = await call(leader.api, 'POST', '/v1/projects/hello/deploys', await pack('hello'));
      assert.equal(deployed.status, 202, JSON.stringify(deployed.body));
      const rootId = (deployed.body.job as Job).id;

      // Reads on the follower come from its memory, reloaded from the store.
      await eventually(async () => (await call(follower!.base, 'GET', '/v1/projects')).body.projects?.some((p: { name: string }) => p.name === 'hello'), 'the follower sees the deployed project', 15_000);
      await eventually(async () => (await call(follower!.base, 'GET', '/v1/jobs')).body.jobs?.some((j: Job) => j.id === rootId), 'the follower lists the leader\'s running tree', 15_000);

      const refused = await call(follower.base, 'POST', '/v1/projects/hello/scale', { services: { web: '2' } });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'not_leader');
      assert.match(refused.body.error.message, /this controller \(ctl_b\) is not the leader; the leader is ctl_a at http:\/\/127\.0\.0\.1:\d+: send writes there/);
      assert.deepEqual(refused.body.leader, { id: 'ctl_a', apiUrl: leader.api });
      assert.equal((await call(follower.base, 'DELETE', '/v1/projects/hello')).body.error.code, 'not_leader');
      // `enjin cluster --json` against the follower names the leader too.
      const cli = await runCli(['--json', 'cluster'], { dataDir: dir, env: { ENJIN_API: follower.base, ENJIN_TOKEN: TOKEN }, timeoutMs: 60_000 });
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(cli.json.leader.id, 'ctl_a');
      assert.equal(cli.json.self.id, 'ctl_b');

      const killedAt = Date.now();
      leader.child.kill('SIGKILL');
      await eventually(() => follower!.controller.leadership.leading, 'the follower takes over', 15_000);
      const tookMs = Date.now() - killedAt;
      assert.ok(tookMs < 10_000, `took over in ${tookMs} ms`);

      const tree = await eventually(async () => {
        const jobs = await follower!.controller.store.getJobTree(rootId);
        return jobs.every((j) => ['succeeded', 'failed', 'aborted'].includes(j.state)) ? jobs : null;
      }, 'the dead leader\'s tree ends', 15_000);
      const root = tree.find((j) => j.id === rootId)!;
      assert.equal(root.state, 'failed');
      assert.match(root.error ?? '', /the leader controller ctl_a stopped while this ran; ctl_b took over/);
      assert.ok(!tree.some((j) => j.state === 'running' || j.state === 'waiting'), 'nothing is left running');

      cluster = await call(follower.base, 'GET', '/v1/cluster');
      assert.deepEqual(cluster.body.self, { id: 'ctl_b', apiUrl: follower.base, leader: true });
      assert.equal(cluster.body.leader.id, 'ctl_b');
      // The new leader takes writes (this one finds no ready node: it has none, but it is no longer not_leader).
      const write = await call(follower.base, 'POST', '/v1/projects/hello/scale', { services: { web: '2' } });
      assert.notEqual(write.body.error?.code, 'not_leader', JSON.stringify(write.body));
    } finally {
      if (leader.child.pid && alive(leader.child.pid)) leader.child.kill('SIGKILL');
      await stopController(follower);
    }
  });

  test('a leader that goes silent without closing its connections (a lost host) loses the lead within 10 s', async () => {
    const url = await pg.createDatabase();
    const dir = tempDir('silent');
    dirs.push(dir);
    const leader = await startPeer(url, 'ctl_silent');
    let follower: Running | undefined;
    try {
      follower = await startController(url, dir, 'ctl_watch');
      assert.equal(follower.controller.leadership.leading, false);
      // SIGSTOP: the process stops answering but its sockets stay open, as when a host vanishes from the network.
      const stoppedAt = Date.now();
      leader.child.kill('SIGSTOP');
      await eventually(() => follower!.controller.leadership.leading, 'the follower takes over', 20_000);
      const tookMs = Date.now() - stoppedAt;
      assert.ok(tookMs < 10_000, `took over in ${tookMs} ms`);
    } finally {
      if (leader.child.pid && alive(leader.child.pid)) leader.child.kill('SIGKILL');
      await stopController(follower);
    }
  });

  test('PostgreSQL stopped: tokens and reads work from memory, desired-state writes get 503 and change nothing, a reconcile tree runs; back: queued rows are written', async (t) => {
    if (!pg.halt || !pg.resume) return t.skip('ENJIN_TEST_DATABASE_URL: a shared server is not ours to stop');
    const url = await pg.createDatabase();
    const dir = tempDir('outage');
    dirs.push(dir);

    // The state a deploy leaves: project hello v1 with one web instance running on node_1.
    const seed = await openStore({ dataDir: dir, databaseUrl: url });
    const now = new Date().toISOString();
    await seed.insertWorkspace({ id: 'ws_default', name: 'default', createdAt: now });
    await seed.insertToken({ id: 'tok_test', name: 'test', hash: hashToken(TOKEN), workspaceId: null, createdAt: now });
    const project: Project = { id: 'prj_hello', workspaceId: 'ws_default', name: 'hello', currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now };
    await seed.saveProject(project);
    const version: Version = { id: 'ver_1', projectId: project.id, number: 1, sha256: 'a'.repeat(64), size: 1, manifest: parseManifest('project: hello\nservices:\n  web:\n    command: node s.js\n'), createdAt: now };
    await seed.insertVersion(version);
    await seed.saveProject({ ...project, currentVersionId: version.id, routedVersionId: version.id });
    const current = { state: 'running' as const, nodeId: 'node_1', pid: 4242, host: '127.0.0.1', port: 20001, restarts: 0, lastExit: null, message: null, reportedAt: now };
    const instance: Instance = { id: 'inst_1', workspaceId: 'ws_default', projectId: project.id, service: 'web', versionId: version.id, nodeId: 'node_1', desired: 'running', createdAt: now, current };
    await seed.saveInstance(instance);
    await seed.close();

    const r = await startController(url, dir, 'ctl_solo', { reconcileIntervalMs: 200 });
    const report = (state: 'running' | 'failed') => ({ instanceId: 'inst_1', service: 'web', project: 'hello', versionId: version.id, desired: 'running' as const, current: { ...current, state, reportedAt: new Date().toISOString() } });
    const node1 = new SimulatedNode(r.bus, 'node_1');
    const node2 = new SimulatedNode(r.bus, 'node_2');
    let halted = false;
    try {
      assert.equal(r.controller.leadership.leading, true);
      node1.full([report('running')]);
      node2.full([]);
      await eventually(() => r.controller.state.nodes.get('node_2')?.status === 'ready', 'both nodes ready');

      await pg.halt!();
      halted = true;

      // Tokens and reads: from memory.
      const projects = await call(r.base, 'GET', '/v1/projects');
      assert.equal(projects.status, 200);
      assert.equal(projects.body.projects[0].name, 'hello');
      assert.equal((await call(r.base, 'GET', '/v1/instances')).body.instances.length, 1);
      assert.equal((await fetch(`${r.base}/healthz`)).status, 200);

      // Desired-state writes: refused before anything changes.
      const scale = await call(r.base, 'POST', '/v1/projects/hello/scale', { services: { web: '3' } });
      assert.equal(scale.status, 503);
      assert.equal(scale.body.error.code, 'store_unavailable');
      assert.match(scale.body.error.message, /unreachable.*nothing was changed.*retry/);
      assert.deepEqual(r.controller.state.projects.get(project.id)!.scale, {}, 'memory did not change');
      const deploy = await call(r.base, 'POST', '/v1/projects/hello/deploys', await pack('hello'));
      assert.equal(deploy.body.error.code, 'store_unavailable');
      assert.equal(r.controller.state.versionsOf(project.id).length, 1, 'no version was added');
      assert.equal((await call(r.base, 'DELETE', '/v1/projects/hello')).body.error.code, 'store_unavailable');
      assert.ok(r.controller.state.projects.has(project.id), 'the project was not destroyed');

      // Supervision goes on: node_1 gives up on the instance, the reconcile loop replaces it (on either node).
      assert.equal(node1.requests.length + node2.requests.length, 0);
      node1.delta([report('failed')]);
      const root = await eventually(() => r.controller.jobs.activeRoots().find((j) => j.kind === 'reconcile'), 'a reconcile tree runs during the outage', 30_000);
      await eventually(() => node1.requests.length + node2.requests.length > 0, 'the tree asks a node to take the replacement', 30_000);
      assert.ok(r.controller.store.pending > 0, 'its rows wait in memory');
      // The tree can be watched from memory: its state and log, and the job listing.
      const view = await call(r.base, 'GET', `/v1/jobs/${root.id}`);
      assert.equal(view.status, 200, JSON.stringify(view.body));
      assert.equal(view.body.job.kind, 'reconcile');
      assert.ok(JSON.stringify(view.body.job).includes('"log":['), 'logs are included');
      const listed = await call(r.base, 'GET', '/v1/jobs');
      assert.ok(listed.body.jobs.some((j: { id: string }) => j.id === root.id), 'the listing shows it');
      assert.equal(r.controller.leadership.leading, true, 'the leader keeps leading: nobody can take the lock');

      await pg.resume!();
      halted = false;
      await eventually(() => r.controller.store.pending === 0, 'the queued rows are written', 60_000);
      const check = await openStore({ dataDir: dir, databaseUrl: url });
      try {
        const jobs = await check.getJobTree(root.id);
        assert.ok(jobs.length > 1, 'the tree reached the store');
        assert.equal(jobs[0].kind, 'reconcile');
        const snapshot = await check.load();
        assert.equal(snapshot.instances.find((i) => i.id === 'inst_1')?.current?.state, 'failed', 'the instance row carries what node_1 reported');
      } finally {
        await check.close();
      }
      await eventually(() => r.controller.leadership.leading, 'still the leader after PostgreSQL returns');
      // Writes are taken again (this one waits for the running tree, so it is a conflict, not an outage).
      const again = await call(r.base, 'POST', '/v1/projects/hello/scale', { services: { web: '1' } });
      assert.notEqual(again.body.error?.code, 'store_unavailable', JSON.stringify(again.body));
    } finally {
      if (halted) await pg.resume!().catch(() => undefined);
      node1.stop();
      node2.stop();
      await stopController(r);
    }
  });
});
