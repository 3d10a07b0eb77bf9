// The rollout job on a real Controller (PGlite store, MemoryBus) with simulated agents whose instances report health:
// a canary pauses beside the old version (both routed), is promoted and rolled out one at a time within the surge
// limit; a version that never gets healthy is rolled back with its probe's output; an abort puts the old one back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBus } from '../../bus/memory.ts';
import { Controller } from '../controller.ts';
import { EnjinError } from '../../core/errors.ts';
import { parseManifest } from '../../core/manifest.ts';
import type { Instance, Job, Project, UpdateSpec } from '../../core/model.ts';
import { openStore } from '../../store/open.ts';
import type { Store } from '../../store/store.ts';
import { cleanup, tempDir } from '../../../test/support/enjin.ts';
import { SimulatedAgent } from '../../../test/support/simulated-agent.ts';

async function waitFor(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('rollout job', () => {
  let dir: string;
  let store: Store;
  let bus: MemoryBus;
  let c: Controller;
  let packageNo = 0;
  const agents: SimulatedAgent[] = [];
  const project = (): Project => c.state.projectByName(c.defaultWorkspace().id, 'shop')!;
  const web = (): Instance[] => c.state.instancesOf(project().id).filter((i) => i.service === 'web' && i.desired === 'running');
  const versionNumber = (i: Instance) => c.state.versions.get(i.versionId)!.number;
  const upstreams = () => c.routes.table.services['default/shop/web']?.upstreams.map((u) => u.instanceId).sort() ?? [];

  /** Deploys a new package of shop (web ×4) with `update`; resolves with the deploy's root job. */
  const deploy = async (update?: Partial<UpdateSpec>): Promise<Job> => {
    const bytes = Buffer.from(`package ${++packageNo}`);
    const path = c.packages.uploadPath();
    writeFileSync(path, bytes);
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, instances: 4 }\n', 'enjin.yaml');
    if (update) manifest.services.web.update = { parallelism: 1, canary: 0, minHealthyTime: 0, healthyDeadline: 300, autoRollback: true, maxSurge: 0, ...update };
    const done = await c.deploy('shop', { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length, path }, manifest, true, { by: 'test' });
    return done.job!;
  };
  /** the most web instances meant to run at once, since the last reset */
  let maxAlive = 0;

  const startController = () => Controller.start({ store, bus, dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 600_000, drainTimeoutMs: 200 });

  before(async () => {
    dir = tempDir('rollout-job');
    store = await openStore({ dataDir: dir });
    bus = new MemoryBus();
    c = await startController();
    for (const [name, port] of [['alpha', 43_000], ['bravo', 44_000]] as const) {
      const a = new SimulatedAgent(bus, `node_${name}`, name, port);
      a.healthOnStart = () => 'healthy';
      agents.push(a);
      a.connect();
    }
    await waitFor('two ready nodes', () => [...c.state.nodes.values()].filter((n) => n.status === 'ready').length === 2);
    c.state.onInstanceChange(() => {
      if (c.state.projectByName(c.defaultWorkspace().id, 'shop')) maxAlive = Math.max(maxAlive, web().length);
    });
    const first = await deploy();
    assert.equal((await c.jobs.wait(first.id)).state, 'succeeded');
  });

  after(async () => {
    for (const a of agents) a.disconnect();
    await c?.stop();
    await store?.close();
    cleanup(dir);
  });

  test('a canary pauses beside the old version, both routed; promoted, the rest rolls out one at a time', async () => {
    maxAlive = 0;
    assert.throws(() => c.rollouts.promote(project(), 'test'), (err: unknown) => err instanceof EnjinError && err.code === 'no_paused_rollout' && err.status === 409);
    const root = await deploy({ canary: 1, parallelism: 1, maxSurge: 1 });
    await waitFor('the rollout to pause', () => project().rollout?.phase === 'paused');
    assert.deepEqual(web().map(versionNumber).sort(), [1, 1, 1, 1, 2], 'one canary beside the four old instances');
    await waitFor('the canary routed beside the old ones', () => upstreams().length === 5);
    assert.deepEqual(upstreams(), web().map((i) => i.id).sort());
    assert.equal(c.jobs.isActive(root.id), true, 'the tree waits, running, for the operator');

    c.rollouts.promote(project(), 'test');
    const done = await c.jobs.wait(root.id);
    assert.equal(done.state, 'succeeded', done.error ?? '');
    assert.deepEqual(web().map(versionNumber), [2, 2, 2, 2]);
    assert.equal(maxAlive, 5, 'never more than wanted + max_surge alive');
    assert.equal(project().routedVersionId, project().currentVersionId);
    assert.equal(project().rollout ?? null, null);
    await waitFor('routes on the new version only', () => upstreams().join() === web().map((i) => i.id).sort().join());
    const tree = await c.jobs.getTree(root.id, true);
    const log = tree.children[0].log!.join('\n');
    if (process.env.SHOW_LOG) console.log(log);
    assert.match(log, /rollout paused: promote with `enjin deploy --promote --project shop`/);
    assert.match(log, /promoted by test/);
    assert.throws(() => c.rollouts.abort(project(), 'test'), (err: unknown) => err instanceof EnjinError && err.code === 'no_paused_rollout');
  });

  test('a version that is not healthy by the deadline is rolled back, with its probe\'s output', async () => {
    const before = web().map((i) => i.id).sort();
    const sick = new Set<string>();
    for (const a of agents) {
      a.healthOnStart = (spec) => {
        if (c.state.versions.get(spec.versionId)?.number !== 3) return 'healthy';
        sick.add(spec.instanceId);
        setImmediate(() => a.setHealth(spec.instanceId, 'unhealthy', { ok: false, at: new Date().toISOString(), durationMs: 3, output: 'HTTP 503 from /healthz', failures: 1 }));
        return 'starting';
      };
    }
    const root = await deploy({ parallelism: 2, healthyDeadline: 2 });
    const done = await c.jobs.wait(root.id);
    assert.equal(done.state, 'failed');
    assert.match(done.error ?? '', /rolled back to v2: .*not healthy \(unhealthy\) within the healthy deadline of 2 s; its last probe: HTTP 503 from \/healthz/);
    assert.ok(sick.size > 0);
    assert.deepEqual(web().map((i) => i.id).sort(), before, 'the old instances never stopped');
    assert.equal(c.state.versions.get(project().currentVersionId!)!.number, 2, 'desired is v2 again');
    assert.equal(project().routedVersionId, project().currentVersionId);
    assert.equal(project().rollout ?? null, null);
    assert.ok(c.state.instancesOf(project().id).every((i) => versionNumber(i) === 2), 'nothing of v3 is left');
    for (const a of agents) a.healthOnStart = () => 'healthy';
  });

  test('an abort during the canary pause, or of the tree mid-rollout, leaves the old version as it was', async () => {
    const before = web().map((i) => i.id).sort();
    let root = await deploy({ canary: 2 });
    await waitFor('the rollout to pause', () => project().rollout?.phase === 'paused');
    assert.equal(web().length, 6);
    c.rollouts.abort(project(), 'test');
    let done = await c.jobs.wait(root.id);
    assert.equal(done.state, 'failed');
    assert.match(done.error ?? '', /rolled back to v2: aborted by test/);
    assert.deepEqual(web().map((i) => i.id).sort(), before);

    // `enjin jobs abort` on the tree while batches run: the rollout still puts v2 back before the tree ends.
    root = await deploy({ parallelism: 1, minHealthyTime: 3600 });
    await waitFor('a new instance up', () => web().some((i) => versionNumber(i) > 2 && i.current?.state === 'running'));
    done = await c.jobs.abort(root.id, 'aborted by a user');
    assert.equal(done.state, 'aborted');
    assert.deepEqual(web().map((i) => i.id).sort(), before);
    assert.equal(c.state.versions.get(project().currentVersionId!)!.number, 2);
    assert.equal(project().rollout ?? null, null);
  });

  test('a controller restarted mid-rollout ends it as interrupted and puts the previous version back', async () => {
    const before = web().map((i) => i.id).sort();
    const previous = project().currentVersionId;
    await deploy({ canary: 1 });
    await waitFor('the rollout to pause', () => project().rollout?.phase === 'paused');
    assert.equal(web().length, 5);
    await c.stop();
    c = await startController();
    for (const a of agents) {
      a.disconnect();
      a.connect();
    }
    await waitFor('both nodes ready again', () => [...c.state.nodes.values()].filter((n) => n.status === 'ready').length === 2);
    assert.equal(project().rollout ?? null, null, 'the rollout record is not kept across a restart');
    assert.equal(project().currentVersionId, previous, 'the interrupted deploy put the previous version back as desired');
    const deadline = Date.now() + 60_000;
    while (web().map((i) => i.id).sort().join() !== before.join()) {
      if (Date.now() > deadline) throw new Error(`the canary was not stopped: ${web().map((i) => `${i.id} v${versionNumber(i)}`).join(', ')}`);
      await c.tick();
      await Promise.all(c.jobs.activeRoots().map((r) => c.jobs.wait(r.id)));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(upstreams().length <= 4 && upstreams().every((id) => before.includes(id)), true, 'only the old version is routed');
  });
});
