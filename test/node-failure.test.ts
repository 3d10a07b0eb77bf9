// Node failure on a real Controller (PGlite store, MemoryBus) with simulated agents: a silent node goes down after
// nodeDownAfterMs and its instances are replaced and leave the routes; when it returns nothing runs twice; drain,
// activate and remove through the API; unknown instances adopted or kept as unmanaged, never stopped.
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
import type { InstanceView, JobTreeView, NodeView } from '../src/core/api.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import { cleanup, tempDir } from './support/enjin.ts';
import { SimulatedAgent } from './support/simulated-agent.ts';

const DOWN_AFTER_MS = 30_000;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function flatten(tree: JobTreeView): JobTreeView[] {
  return [tree, ...tree.children.flatMap(flatten)];
}

describe('node failure, drain and unknown instances', () => {
  let dir: string;
  let store: Store;
  let bus: MemoryBus;
  let c: Controller;
  let api: Awaited<ReturnType<typeof buildApi>>;
  let base = '';
  let token = '';
  /** the controller's clock runs this far ahead of the real one; tests move it instead of sleeping */
  let skew = 0;
  const agents = new Map<string, SimulatedAgent>();

  const call = async (method: string, path: string): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: await res.json() };
  };
  const agent = (name: string, port: number, id = `node_${name}`) => {
    const a = new SimulatedAgent(bus, id, name, port);
    agents.set(a.nodeId, a);
    a.connect();
    return a;
  };
  const project = (): Project => c.state.projectByName(c.defaultWorkspace().id, 'shop')!;
  /** instances of shop's web meant to run */
  const web = (): Instance[] => c.state.instancesOf(project().id).filter((i) => i.service === 'web' && i.desired === 'running');
  const upstreams = () => {
    c.routes.refreshNow();
    return c.routes.table.services['default/shop/web']?.upstreams.map((u) => u.instanceId).sort() ?? [];
  };
  /** Every connected agent speaks, and the controller has heard it at its current clock. */
  const heartbeats = async () => {
    const at = c.now();
    for (const a of agents.values()) if (a.connected) a.heartbeat();
    await waitFor('heartbeats', () => [...agents.values()].every((a) => !a.connected || Date.parse(c.state.nodes.get(a.nodeId)?.lastSeenAt ?? '') >= at));
  };
  /** Runs the leader's loop once and waits for every tree it started. */
  const tick = async (): Promise<Job[]> => {
    await c.tick();
    const roots = c.jobs.activeRoots();
    return Promise.all(roots.map((r) => c.jobs.wait(r.id)));
  };
  const treeOf = async (job: Job) => flatten(await c.jobs.getTree(job.id, true));

  const startController = async () => {
    c = await Controller.start({ store, bus, dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 600_000, drainTimeoutMs: 200, nodeDownAfterMs: DOWN_AFTER_MS, now: () => Date.now() + skew });
    api = await buildApi(c);
    await api.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    c.apiUrl = base;
    token = await c.auth.create('test');
  };

  before(async () => {
    dir = tempDir('node-failure');
    store = await openStore({ dataDir: dir });
    bus = new MemoryBus();
    await startController();
    for (const [name, port] of [['alpha', 41_000], ['bravo', 42_000], ['charlie', 43_000]] as const) agent(name, port);
    await waitFor('three ready nodes', () => [...c.state.nodes.values()].filter((n) => n.status === 'ready').length === 3);

    const bytes = Buffer.from('not a real package: simulated agents never unpack it');
    const path = c.packages.uploadPath();
    writeFileSync(path, bytes);
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: node server.js, instances: 2 }\n', 'enjin.yaml');
    const done = await c.deploy('shop', { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path }, manifest, true, { by: 'test' });
    assert.equal((await c.jobs.wait(done.job!.id)).state, 'succeeded');
  });

  after(async () => {
    for (const a of agents.values()) a.disconnect();
    await api?.close();
    await c?.stop();
    await store?.close();
    cleanup(dir);
  });

  test('a first deploy spreads: one web instance per node, both routed', () => {
    const nodes = web().map((i) => i.nodeId);
    assert.equal(new Set(nodes).size, 2);
    assert.deepEqual(upstreams(), web().map((i) => i.id).sort());
  });

  test('a silent node is down after nodeDownAfterMs; its instance is replaced on the spare node and leaves the routes; back, nothing runs twice', async () => {
    const [lost, kept] = web();
    const victim = agents.get(lost.nodeId)!;
    const spare = [...agents.keys()].find((id) => !web().some((i) => i.nodeId === id))!;
    await heartbeats();
    victim.disconnect();

    // Silent for less than the limit (with 10 s to spare for a slow machine): still ready, nothing moves.
    skew += DOWN_AFTER_MS - 10_000;
    await heartbeats();
    assert.deepEqual(await tick(), []);
    assert.equal(c.state.nodes.get(victim.nodeId)!.status, 'ready');

    skew += 11_000;
    await heartbeats();
    // The tick's first step, alone: the node is down and routers stop using its instance at once, while its row is
    // still meant to run (nothing has replaced it yet).
    assert.deepEqual(c.nodeLifecycle.markSilentNodesDown().map((n) => n.id), [victim.nodeId]);
    assert.equal(c.state.instances.get(lost.id)?.desired, 'running');
    assert.deepEqual(upstreams(), [kept.id], 'routes drop the down node at once');
    const trees = await tick();
    assert.equal(c.state.nodes.get(victim.nodeId)!.status, 'down');
    assert.ok(c.notifications.some((n) => n.kind === 'node-down' && n.nodeId === victim.nodeId));
    assert.equal(trees.length, 1, 'one tree replaces the lost instance');
    assert.equal(trees[0].state, 'succeeded', trees[0].error ?? '');
    const jobs = await treeOf(trees[0]);
    const stop = jobs.find((j) => j.kind === 'stop')!;
    assert.deepEqual((stop.params.stops as Array<{ instanceId: string; reason: string }>).map((s) => [s.instanceId, s.reason]), [[lost.id, `node ${victim.name} is down`]]);
    const start = jobs.find((j) => j.kind === 'start')!;
    assert.equal(start.tags.node, spare, 'the replacement goes to the node that had no web instance');
    // Replacements first, then the stop: the tree's order.
    assert.ok(Date.parse(stop.startedAt!) >= Date.parse(start.finishedAt!));

    const replacement = web().find((i) => i.nodeId === spare)!;
    assert.ok(replacement && replacement.current?.state === 'running');
    assert.deepEqual(web().filter((i) => i.nodeId !== victim.nodeId).map((i) => i.id).sort(), [kept.id, replacement.id].sort());
    assert.deepEqual(upstreams(), [kept.id, replacement.id].sort(), 'routes never point at the down node');

    // The node returns, still running the instance that was replaced.
    assert.ok(victim.running.has(lost.id));
    victim.connect();
    await waitFor('the node to be ready again', () => c.state.nodes.get(victim.nodeId)!.status === 'ready');
    // However the controller learns it (a tombstone's stop, or an adopted excess trimmed by the reconciler), the
    // replaced instance is stopped and the replacements stay: two web instances, none on the returned node.
    await waitFor('the replaced instance gone from the returned node', async () => {
      await tick();
      return c.state.instancesOnNode(victim.nodeId).length === 0;
    });
    assert.deepEqual(web().map((i) => i.id).sort(), [kept.id, replacement.id].sort(), 'no duplicates, and the replacement kept');
    assert.deepEqual(upstreams(), [kept.id, replacement.id].sort());
    assert.deepEqual(await tick(), [], 'converged');
  });

  test('draining a node through the API moves its instance (the new one ready first) and places nothing new there; activate undoes it', async () => {
    const from = web()[0];
    const node = c.state.nodes.get(from.nodeId)!;
    const drained = await call('POST', `/v1/nodes/${node.name}/drain`);
    assert.equal(drained.status, 202, JSON.stringify(drained.body));
    assert.equal(drained.body.node.state, 'draining');
    assert.equal(drained.body.jobs.length, 1);
    const root = await c.jobs.wait(drained.body.jobs[0].id);
    assert.equal(root.state, 'succeeded', root.error ?? '');
    const jobs = await treeOf(root);
    const stop = jobs.find((j) => j.kind === 'stop')!;
    const start = jobs.find((j) => j.kind === 'start')!;
    assert.deepEqual((stop.params.stops as Array<{ reason: string }>).map((s) => s.reason), [`node ${node.name} is draining`]);
    assert.ok(Date.parse(stop.startedAt!) >= Date.parse(start.finishedAt!), 'the new instance was ready before the old one stopped');
    assert.equal(web().length, 2);
    assert.ok(web().every((i) => i.nodeId !== node.id));
    assert.ok((await store.load()).nodes.find((n) => n.id === node.id)!.draining, 'the drain is stored');

    const listed = (await call('GET', '/v1/nodes')).body.nodes as NodeView[];
    const row = listed.find((n) => n.id === node.id)!;
    assert.equal(row.state, 'draining');
    assert.equal(row.instances, 0);
    assert.deepEqual(Object.keys(row).sort(), ['address', 'capacity', 'compartment', 'createdAt', 'disk', 'id', 'instances', 'labels', 'lastSeenAt', 'name', 'roles', 'state', 'unmanaged']);

    // Scaling up places nothing on the draining node, even with only two other nodes for three instances.
    const scaled = await c.scale(project(), { web: 3 }, 'test');
    assert.equal((await c.jobs.wait(scaled!.id)).state, 'succeeded');
    assert.equal(web().length, 3);
    assert.ok(web().every((i) => i.nodeId !== node.id));

    const activated = await call('POST', `/v1/nodes/${node.id}/activate`);
    assert.equal(activated.status, 200);
    assert.equal(activated.body.node.state, 'ready');
    const more = await c.scale(project(), { web: 4 }, 'test');
    assert.equal((await c.jobs.wait(more!.id)).state, 'succeeded');
    assert.equal(web().filter((i) => i.nodeId === node.id).length, 1, 'an active node takes new instances again');
    assert.equal((await c.scale(project(), { web: 2 }, 'test')) !== null, true);
    await waitFor('scale back to 2', async () => (await tick()).length === 0 && web().length === 2 && c.jobs.activeRoots().length === 0);
  });

  test('an unknown instance of an unknown project is kept running and listed as unmanaged, with one notification', async () => {
    const a = agents.get('node_alpha')!;
    const before = c.notifications.length;
    a.runForeign({ instanceId: 'inst_ghost1', service: 'web', project: 'ghost', versionId: 'ver_unknown', desired: 'running' });
    await waitFor('the unmanaged instance', () => c.state.unmanaged.has('inst_ghost1'));
    a.heartbeat();
    a.runForeign({ instanceId: 'inst_ghost2', service: 'web', project: 'ghost', versionId: 'ver_unknown', desired: 'running' });
    await waitFor('the second one', () => c.state.unmanaged.has('inst_ghost2'));
    // Full state again (the controller asked for a resync): still listed, not notified twice.
    bus.publish(`enjin.resync.${a.nodeId}`, {});
    await heartbeats();
    const about = c.notifications.slice(before).filter((n) => n.instanceId === 'inst_ghost1');
    assert.equal(about.length, 1, JSON.stringify(about));
    assert.match(about[0].message, /left running and listed as unmanaged/);

    assert.deepEqual(await tick(), [], 'nothing is planned for it');
    assert.ok(a.running.has('inst_ghost1') && a.running.has('inst_ghost2'), 'never stopped');
    assert.equal(c.state.instances.has('inst_ghost1'), false);
    const row = ((await call('GET', '/v1/nodes')).body.nodes as NodeView[]).find((n) => n.id === a.nodeId)!;
    assert.equal(row.unmanaged, 2);
    const shown = await call('GET', '/v1/nodes/alpha');
    assert.deepEqual(shown.body.unmanaged.map((u: { id: string }) => u.id).sort(), ['inst_ghost1', 'inst_ghost2']);

    // Listed only while the node reports it.
    a.forget('inst_ghost1');
    await waitFor('the stopped one unlisted', () => !c.state.unmanaged.has('inst_ghost1'));
    assert.ok(c.state.unmanaged.has('inst_ghost2'));
  });

  test('an unknown instance of a known project and version is adopted (stored) and the excess trimmed by an explicit stop', async () => {
    const b = agents.get('node_bravo')!;
    const version = project().currentVersionId!;
    b.runForeign({ instanceId: 'inst_stray', service: 'web', project: 'shop', versionId: version, desired: 'running' });
    await waitFor('adoption', () => c.state.instances.has('inst_stray'));
    const adopted = c.state.instances.get('inst_stray')!;
    assert.equal(adopted.desired, 'running');
    assert.equal(adopted.nodeId, b.nodeId);
    assert.equal(adopted.current?.state, 'running');
    assert.equal(c.state.unmanaged.has('inst_stray'), false);
    await waitFor('the adopted row stored', async () => (await store.load()).instances.some((i) => i.id === 'inst_stray'));
    assert.ok(c.notifications.some((n) => n.instanceId === 'inst_stray' && /adopted/.test(n.message)));

    // Three web instances for two wanted: the reconciler stops one, the adopted (newest) one.
    const trees = await tick();
    assert.equal(trees.length, 1);
    const stop = (await treeOf(trees[0])).find((j) => j.kind === 'stop')!;
    assert.deepEqual((stop.params.stops as Array<{ instanceId: string; reason: string }>).map((s) => [s.instanceId, s.reason]), [['inst_stray', 'scaled to 2']]);
    await waitFor('the stray instance gone', () => !c.state.instances.has('inst_stray'));
    assert.equal(web().length, 2);
  });

  test('removing a node: refused while it is ready; a down node is forgotten with its instance rows and unmanaged ones', async () => {
    const echo = agent('echo', 44_000);
    await waitFor('echo ready', () => c.state.nodes.get(echo.nodeId)?.status === 'ready');
    echo.runForeign({ instanceId: 'inst_ghost3', service: 'web', project: 'ghost', versionId: 'ver_unknown', desired: 'running' });
    echo.runForeign({ instanceId: 'inst_echo_web', service: 'web', project: 'shop', versionId: project().currentVersionId!, desired: 'running' });
    await waitFor('echo reports', () => c.state.unmanaged.has('inst_ghost3') && c.state.instances.has('inst_echo_web'));

    const refused = await call('DELETE', '/v1/nodes/echo');
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'node_ready');
    assert.match(refused.body.error.message, /--force/);
    assert.equal((await call('DELETE', '/v1/nodes/nope')).status, 404);

    echo.disconnect();
    skew += DOWN_AFTER_MS + 1_000;
    await heartbeats();
    // Only the node check of the tick: the adopted row stays on the down node until the removal forgets it.
    assert.deepEqual(c.nodeLifecycle.markSilentNodesDown().map((n) => n.id), [echo.nodeId]);
    assert.equal(c.state.nodes.get(echo.nodeId)!.status, 'down');
    await waitFor('the adopted row stored', async () => (await store.load()).instances.some((i) => i.id === 'inst_echo_web'));
    assert.equal(((await call('GET', '/v1/nodes/echo')).body.node as NodeView).state, 'down');

    const removed = await call('DELETE', '/v1/nodes/echo');
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(c.state.nodes.has(echo.nodeId), false);
    assert.equal(c.state.instancesOnNode(echo.nodeId).length, 0);
    assert.equal(c.state.instances.has('inst_echo_web'), false);
    assert.equal(c.state.unmanaged.has('inst_ghost3'), false);
    const stored = await store.load();
    assert.ok(!stored.nodes.some((n) => n.id === echo.nodeId));
    assert.ok(!stored.instances.some((i) => i.nodeId === echo.nodeId));
    assert.ok(!((await call('GET', '/v1/nodes')).body.nodes as NodeView[]).some((n) => n.id === echo.nodeId));
    assert.equal(web().length, 2);
    assert.deepEqual(await tick(), [], 'nothing to replace: the two wanted web instances run elsewhere');

    // Two nodes of one name: the name is refused as ambiguous, the id works.
    const twins = [agent('twin', 46_000, 'node_twin1'), agent('twin', 47_000, 'node_twin2')];
    await waitFor('twins ready', () => twins.every((t) => c.state.nodes.get(t.nodeId)?.status === 'ready'));
    const ambiguous = await call('POST', '/v1/nodes/twin/drain');
    assert.equal(ambiguous.status, 400);
    assert.match(ambiguous.body.error.message, /node_twin1, node_twin2/);
    for (const t of twins) {
      t.disconnect();
      assert.equal((await call('DELETE', `/v1/nodes/${t.nodeId}?force=true`)).status, 200);
    }

    // Forced: a ready node goes too.
    const foxtrot = agent('foxtrot', 45_000);
    await waitFor('foxtrot ready', () => c.state.nodes.get(foxtrot.nodeId)?.status === 'ready');
    foxtrot.disconnect();
    const forced = await call('DELETE', `/v1/nodes/${foxtrot.nodeId}?force=true`);
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.equal(c.state.nodes.has(foxtrot.nodeId), false);
  });

  test('instances in the API carry their node id, its name and their pid', async () => {
    const { body } = await call('GET', '/v1/instances?project=shop');
    const listed = body.instances as InstanceView[];
    assert.equal(listed.length, 2);
    for (const i of listed) {
      const row = c.state.instances.get(i.id)!;
      assert.equal(i.node, row.nodeId);
      assert.equal(i.nodeName, c.state.nodes.get(row.nodeId)!.name);
      assert.equal(i.pid, row.current!.pid);
      assert.equal(typeof i.pid, 'number');
    }
  });

  test('a restarted controller gives every node nodeDownAfterMs to speak: nothing moves off a live node, a silent one is replaced after', async () => {
    const before = web().map((i) => i.id).sort();
    const silent = agents.get(web()[0].nodeId)!;
    await heartbeats();
    silent.disconnect();
    await api.close();
    await c.stop();
    await startController();

    // From the stored state: the silent node is not called down yet, and routers keep every instance.
    assert.equal(c.state.nodes.get(silent.nodeId)!.status, 'ready');
    assert.deepEqual(web().map((i) => i.id).sort(), before);
    assert.deepEqual(upstreams(), before);
    await heartbeats();
    skew += DOWN_AFTER_MS - 10_000;
    await heartbeats();
    assert.deepEqual(await tick(), [], 'nothing moves while the node may still speak');
    assert.equal(c.state.nodes.get(silent.nodeId)!.status, 'ready');

    skew += 11_000;
    await heartbeats();
    const trees = await tick();
    assert.equal(c.state.nodes.get(silent.nodeId)!.status, 'down');
    assert.equal(trees.length, 1);
    assert.equal(trees[0].state, 'succeeded', trees[0].error ?? '');
    assert.equal(web().filter((i) => i.nodeId !== silent.nodeId).length, 2);

    silent.connect();
    await waitFor('the replaced instance gone from the returned node', async () => {
      await tick();
      return c.state.instancesOnNode(silent.nodeId).length === 0;
    });
    assert.equal(web().length, 2);
  });
});
