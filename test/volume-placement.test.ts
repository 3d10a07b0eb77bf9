// Placement of a service with a volume on a real Controller (PGlite store, MemoryBus) with simulated agents: its
// instances all go to one node and stay there across deploys; when that node is down they are not moved (the data
// would be left behind): a deploy is refused with the way out, the reconcile loop leaves them unplaced and says so,
// and when the node is back they run there again.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { EnjinError } from '../src/core/errors.ts';
import { parseManifest } from '../src/core/manifest.ts';
import type { Instance, Project } from '../src/core/model.ts';
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

describe('placement of a service with a volume', () => {
  let dir: string;
  let store: Store;
  let bus: MemoryBus;
  let c: Controller;
  let skew = 0;
  let packageNo = 0;
  const agents: SimulatedAgent[] = [];
  const project = (): Project => c.state.projectByName(c.defaultWorkspace().id, 'shop')!;
  const running = (service: string): Instance[] => c.state.instancesOf(project().id).filter((i) => i.service === service && i.desired === 'running');

  /** Deploys a new package of shop (web ×3 with a volume, api ×2 without); resolves with the tree's state. */
  const deploy = async (): Promise<string> => {
    const bytes = Buffer.from(`package ${++packageNo}`);
    const path = c.packages.uploadPath();
    writeFileSync(path, bytes);
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, instances: 3, volumes: { data: /data } }\n  api: { command: y, instances: 2 }\n', 'enjin.yaml');
    const done = await c.deploy('shop', { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path }, manifest, true, { by: 'test' });
    return (await c.jobs.wait(done.job!.id)).state;
  };
  const heartbeats = async () => {
    const at = c.now();
    for (const a of agents) if (a.connected) a.heartbeat();
    await waitFor('heartbeats', () => agents.every((a) => !a.connected || Date.parse(c.state.nodes.get(a.nodeId)?.lastSeenAt ?? '') >= at));
  };
  const tick = async () => {
    await c.tick();
    return Promise.all(c.jobs.activeRoots().map((r) => c.jobs.wait(r.id)));
  };

  before(async () => {
    dir = tempDir('volume-placement');
    store = await openStore({ dataDir: dir });
    bus = new MemoryBus();
    c = await Controller.start({ store, bus, dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 600_000, drainTimeoutMs: 200, nodeDownAfterMs: DOWN_AFTER_MS, now: () => Date.now() + skew });
    for (const [name, port] of [['alpha', 41_000], ['bravo', 42_000]] as const) {
      const a = new SimulatedAgent(bus, `node_${name}`, name, port);
      agents.push(a);
      a.connect();
    }
    await waitFor('two ready nodes', () => [...c.state.nodes.values()].filter((n) => n.status === 'ready').length === 2);
  });

  after(async () => {
    for (const a of agents) a.disconnect();
    await c?.stop();
    await store?.close();
    cleanup(dir);
  });

  test('every instance goes to the node that holds the volume, deploy after deploy; the others still spread', async () => {
    assert.equal(await deploy(), 'succeeded');
    const home = running('web')[0].nodeId;
    assert.deepEqual(running('web').map((i) => i.nodeId), [home, home, home], 'three instances on one node');
    assert.equal(new Set(running('api').map((i) => i.nodeId)).size, 2, 'a service without volumes spreads');
    await waitFor('the node to report its volume', () => c.state.nodes.get(home)!.volumes?.some((v) => v.project === 'shop' && v.name === 'data') ?? false);

    assert.equal(await deploy(), 'succeeded');
    assert.equal(running('web').length, 3);
    assert.ok(running('web').every((i) => i.nodeId === home && i.versionId === project().currentVersionId), 'the new version runs where the data is');
  });

  test('its node down: nothing moves; a deploy is refused with the way out; back, it runs there again', async () => {
    const home = running('web')[0].nodeId;
    const victim = agents.find((a) => a.nodeId === home)!;
    await heartbeats();
    victim.disconnect();
    skew += DOWN_AFTER_MS + 1_000;
    await heartbeats();
    const trees = await tick();
    assert.equal(c.state.nodes.get(home)!.status, 'down');
    for (const t of trees) assert.equal(t.state, 'succeeded', t.error ?? '');
    assert.deepEqual(running('web').map((i) => i.nodeId), [home, home, home], 'web is neither stopped nor placed elsewhere');
    assert.ok(running('api').some((i) => i.nodeId !== home) && running('api').every((i) => i.nodeId !== home), 'api moved off the down node as usual');
    const said = c.notifications.filter((n) => /volume data is on node alpha|volume data is on node bravo/.test(n.message));
    assert.equal(said.length, 1, 'said once');
    assert.match(said[0].message, /which is down; its instances wait for that node .*start the agent on \S+ again.*enjin nodes rm/);
    await tick();
    assert.equal(c.notifications.filter((n) => n.message === said[0].message).length, 1, 'not said again on every tick');

    await assert.rejects(deploy(), (err: unknown) => err instanceof EnjinError && err.code === 'volume_node_unavailable' && err.status === 503);

    victim.connect();
    await waitFor('the node ready again', () => c.state.nodes.get(home)!.status === 'ready');
    await tick();
    assert.deepEqual(running('web').map((i) => i.nodeId), [home, home, home]);
    assert.equal(await deploy(), 'succeeded', 'deploys work again once the node is back');
    assert.ok(running('web').every((i) => i.nodeId === home));
  });
});
