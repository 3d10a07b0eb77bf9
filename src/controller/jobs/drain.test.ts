// Connection draining with a real router on a real port: a stop waits for the routers to apply a table without the
// instance and for its requests in flight, within the service's drain; a silent router holds nothing past the drain.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../../bus/memory.ts';
import { parseManifest } from '../../core/manifest.ts';
import type { Instance, InstanceHealth, Project, Version } from '../../core/model.ts';
import { Router } from '../../router/router.ts';
import { get, upstream, waitFor } from '../../router/testing.ts';
import { ControllerState } from '../state.ts';
import { buildRouteTable } from '../routes/build.ts';
import { RoutePublisher } from '../routes/publisher.ts';
import type { ActionHost } from './actions.ts';
import { drainInstances } from './drain.ts';

const HOST = 'web.shop.localhost';

/** A controller's state, route publisher and one real router, sharing an in-memory bus; torn down with the test. */
async function rig(t: TestContext, opts: { drainSeconds?: number } = {}) {
  const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, instances: 2 }\n');
  if (opts.drainSeconds !== undefined) manifest.services.web.drain = opts.drainSeconds;
  const project: Project = { id: 'p1', workspaceId: 'w1', name: 'shop', currentVersionId: 'v1', routedVersionId: 'v1', scale: {}, createdAt: '', updatedAt: '' };
  const version: Version = { id: 'v1', projectId: 'p1', number: 1, sha256: '', size: 0, manifest, createdAt: '' };
  const state = new ControllerState({
    workspaces: [{ id: 'w1', name: 'default', createdAt: '' }], projects: [project], versions: [version], instances: [], unfinishedJobs: [],
    nodes: [{ id: 'n1', name: 'n1', address: '127.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: null, createdAt: '' }],
  });
  const bus = new MemoryBus();
  const routes = new RoutePublisher(bus, () => buildRouteTable({ workspaces: state.workspaces, projects: state.projects.values(), versions: state.versions, instancesOf: (id) => state.instancesOf(id), nodes: state.nodes, domain: 'localhost' }));
  routes.start();
  const dataDir = await mkdtemp(join(tmpdir(), 'enjin-drain-'));
  const router = new Router({ routerId: 'r1', bus, dataDir, port: 0, host: '127.0.0.1' });
  await router.start();
  t.after(async () => {
    await router.stop();
    routes.stop();
    await bus.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await waitFor(() => routes.routers.has('r1'), 'the router to ask for its table');
  const saved: Instance[] = [];
  const host: ActionHost = {
    state, bus, routes, drainTimeoutMs: Infinity,
    saveInstance: async (i) => { saved.push(i); state.putInstance(i); },
    saveProject: async () => {}, forgetInstance: async () => {}, forgetProject: async () => {},
  };
  const addInstance = (id: string, port: number, health: InstanceHealth = 'healthy') => {
    state.putInstance({
      id, workspaceId: 'w1', projectId: 'p1', service: 'web', versionId: 'v1', nodeId: 'n1', desired: 'running', createdAt: '',
      current: { state: 'running', nodeId: 'n1', pid: 1, host: '127.0.0.1', port, restarts: 0, lastExit: null, message: null, reportedAt: '', health },
    });
    return routes.refreshNow();
  };
  const routedIds = () => routes.table.services['default/shop/web']?.upstreams.map((u) => u.instanceId) ?? [];
  const applied = (seq: number) => router.inflight([]).seq >= seq;
  return { state, routes, router, host, saved, addInstance, routedIds, applied };
}

/** An upstream answering `name`; `/slow` waits for `release()` before answering. */
async function instance(t: TestContext, name: string) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let slowArrived = false;
  const { port } = await upstream(t, (req, res) => {
    req.resume();
    if (req.url === '/slow') {
      slowArrived = true;
      void released.then(() => res.end(`${name} slow`));
    } else res.end(name);
  });
  return { port, release, slowArrived: () => slowArrived };
}

describe('drainInstances', () => {
  it('waits for a slow request in flight to the instance, which completes; meanwhile new requests go elsewhere', async (t) => {
    const r = await rig(t);
    const a = await instance(t, 'a');
    const b = await instance(t, 'b');
    r.addInstance('i-a', a.port);
    const seq = r.addInstance('i-b', b.port);
    await waitFor(() => r.applied(seq), 'the router to apply both instances');

    // Whichever instance takes the slow request is the one stopped.
    const slow = get(r.router.port, HOST, { path: '/slow', timeoutMs: 120_000 });
    await waitFor(() => a.slowArrived() || b.slowArrived(), 'the slow request to reach an instance');
    const [victim, other, victimId] = a.slowArrived() ? [a, 'b', 'i-a'] : [b, 'a', 'i-b'];
    assert.equal(r.router.inflight([victimId]).counts[victimId], 1);

    const lines: string[] = [];
    let drained = false;
    const drain = drainInstances(r.host, [r.state.instances.get(victimId)!], { log: (l) => lines.push(l) }).then(() => (drained = true));
    await waitFor(() => !r.routedIds().includes(victimId) && r.applied(r.routes.table.seq), 'the router to apply a table without the instance');
    assert.equal(r.state.isDraining(victimId), true, 'its node is still told to run it');
    assert.equal(r.saved.find((i) => i.id === victimId)?.desired, 'stopped');
    for (let n = 0; n < 5; n++) assert.deepEqual(await get(r.router.port, HOST), { status: 200, body: other }, 'new requests avoid the draining instance');
    await waitFor(() => lines.some((l) => l.includes('in flight to finish')), 'the drain to see the request in flight');
    assert.equal(drained, false, 'the drain waits while the request is in flight');

    victim.release();
    assert.deepEqual(await slow, { status: 200, body: `${victimId === 'i-a' ? 'a' : 'b'} slow` }, 'the slow request completed');
    await drain;
    assert.equal(r.state.isDraining(victimId), false, 'the node may now stop it');
  });

  it("gives up on a request still in flight once the service's drain has passed", async (t) => {
    const r = await rig(t, { drainSeconds: 1 });
    const a = await instance(t, 'a');
    const seq = r.addInstance('i-a', a.port);
    await waitFor(() => r.applied(seq), 'the router to apply the instance');
    const hanging = get(r.router.port, HOST, { path: '/slow', timeoutMs: 120_000 });
    await waitFor(() => a.slowArrived(), 'the slow request to reach the instance');
    const lines: string[] = [];
    await drainInstances(r.host, [r.state.instances.get('i-a')!], { log: (l) => lines.push(l) });
    assert.equal(r.router.inflight(['i-a']).counts['i-a'], 1, 'the drain ended with the request still in flight');
    assert.ok(lines.some((l) => /gave up waiting after 1000 ms \(1 requests still in flight\)/.test(l)), lines.join('\n'));
    a.release();
    assert.equal((await hanging).status, 200);
  });

  it('a router that does not answer holds a stop no longer than the drain; one long silent, or on a down node, is not waited for', async (t) => {
    const r = await rig(t, { drainSeconds: 1 });
    const a = await instance(t, 'a');
    const seq = r.addInstance('i-a', a.port);
    await waitFor(() => r.applied(seq), 'the router to apply the instance');
    // Known to the publisher (it asked for a table once) but nothing answers on its subject.
    r.routes.routers.set('r-silent', { lastSeenAt: Date.now() });
    r.routes.routers.set('r-gone', { lastSeenAt: Date.now() - 10 * 60_000 });
    // A router carries its node's id; its node is down (the agent beside it is silent).
    r.state.nodes.set('n-down', { ...r.state.nodes.get('n1')!, id: 'n-down', name: 'n-down', status: 'down' });
    r.routes.routers.set('n-down', { lastSeenAt: Date.now() });
    const lines: string[] = [];
    await drainInstances(r.host, [r.state.instances.get('i-a')!], { log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => l.includes('router r-silent did not answer') && l.includes('gave up waiting for it after 1000 ms')), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('router r-gone has not asked for routes')), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('router n-down is on node n-down, which is down; not waiting for it')), lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes('router n-down did not answer')), 'the down node\'s router was not asked');
    assert.equal(r.state.isDraining('i-a'), false);
  });
});

describe('route publisher and readiness', () => {
  it("republishes when an instance's health changes: routed once healthy, out again when unhealthy", async (t) => {
    const r = await rig(t);
    const a = await instance(t, 'a');
    let seq = r.addInstance('i-a', a.port, 'starting');
    await waitFor(() => r.applied(seq), 'the router to apply the table');
    assert.equal((await get(r.router.port, HOST)).status, 503, 'a starting instance gets no request');
    const setHealth = (health: InstanceHealth) => {
      const i = r.state.instances.get('i-a')!;
      r.state.putInstance({ ...i, current: { ...i.current!, health } });
      return r.routes.refreshNow();
    };
    seq = setHealth('healthy');
    await waitFor(() => r.applied(seq), 'the router to apply the healthy instance');
    assert.deepEqual(await get(r.router.port, HOST), { status: 200, body: 'a' });
    seq = setHealth('unhealthy');
    await waitFor(() => r.applied(seq), 'the router to apply the table without the unhealthy instance');
    assert.equal((await get(r.router.port, HOST)).status, 503);
  });
});
