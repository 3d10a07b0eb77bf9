// Both state exchanges end to end over a bus that drops, duplicates and reorders: a real agent (real processes) and the
// controller's real state, report intake and store. What the controller wants and what it knows converge; the agent
// never stops work for omission, and keeps running from its saved desired state with no controller.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { LossyBus } from '../bus/lossy.ts';
import { subjects, type DesiredInstance, type DesiredStateUpdate, type InstanceReport, type NodeStateUpdate } from '../core/messages.ts';
import type { Instance, Manifest, Project, Version, Workspace } from '../core/model.ts';
import { Agent } from '../agent/agent.ts';
import { startPackageServer, type PackageServer } from '../agent/package-server.test-support.ts';
import { ControllerState } from '../controller/state.ts';
import { NodeReportIntake } from '../controller/node-reports.ts';
import { desiredInstancesFor } from '../controller/jobs/specs.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { NodeStateReceiver } from './node-state.ts';
import { DesiredStatePublisher } from './desired-publisher.ts';
import { alive as isAlive, eventually } from '../../test/support/enjin.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-desired-'));
const NODE = 'n1';
const SEED = Number(process.env.ENJIN_TEST_SEED ?? 6);
const faults = { drop: 0.2, duplicate: 0.2, reorder: 0.3, maxDelayMs: 40 };
/** only the state exchanges suffer: RPCs (prepare, logs) are not part of them */
const exchanges = (s: string) => s.startsWith('enjin.desired.') || s.startsWith('enjin.state.') || s.startsWith('enjin.resync.');

let packages: PackageServer;
let store: Store;
const agents = new Set<Agent>();
const cleanups: Array<() => void | Promise<void>> = [];

before(async () => {
  packages = await startPackageServer(root);
  store = await openStore({ dataDir: join(root, 'controller') });
});

after(async () => {
  for (const a of agents) await a.stop({ stopInstances: true }).catch(() => {});
  for (const c of cleanups.reverse()) await c();
  packages?.close();
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

/** The shared waiting helper, with this file's argument order and patience. */
const until = <T>(what: string, check: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 90_000): Promise<T> => eventually(check, what, timeoutMs);

const alive = (pid: number | null | undefined): boolean => !!pid && isAlive(pid);

/** The controller's side, built from the real parts: state, report intake, store, both exchange endpoints. */
async function controllerSide(bus: LossyBus) {
  const now = new Date().toISOString();
  const ws: Workspace = { id: 'ws_desired', name: 'default', createdAt: now };
  const project: Project = { id: 'prj_desired', workspaceId: ws.id, name: 'shop', currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now };
  const pkg = packages.version('ver_desired');
  const manifest: Manifest = {
    project: 'shop', prepare: [], env: {},
    services: { web: { name: 'web', command: 'exec sleep 300', instances: 1, listens: false, hostnames: [], health: null, env: {}, stopTimeout: 2 } },
  };
  const version: Version = { id: 'ver_desired', projectId: project.id, number: 1, sha256: pkg.sha256, size: pkg.size, manifest, createdAt: now };
  await store.insertWorkspace(ws);
  await store.saveProject(project);
  await store.insertVersion(version);
  const state = new ControllerState(await store.load());
  const source = { state };
  // The agent fetches the package over the bus, from this responder (what controllers run).
  const serving = packages.serve(bus);
  cleanups.push(() => serving.unsubscribe());
  const intake = new NodeReportIntake({
    state, store, bus, notify: () => {}, routesChanged: () => {},
    persistInstance: (i) => void store.saveInstance(i).catch((err: unknown) => assert.fail(`saving ${i.id}: ${String(err)}`)),
  });
  const receiver = new NodeStateReceiver(bus, { full: (u) => intake.apply(u, true), delta: (u) => intake.apply(u, false) });
  const publisher = new DesiredStatePublisher(bus, { desiredFor: (n) => desiredInstancesFor(source, n), nodeIds: () => state.nodes.keys(), keepaliveMs: 100 });
  state.onInstanceChange((_id, now, before) => {
    for (const n of new Set([now?.nodeId, before?.nodeId])) if (n) publisher.changed(n);
  });
  receiver.start();
  publisher.start();
  cleanups.push(() => { receiver.stop(); publisher.stop(); });
  let serial = 0;
  return {
    state, publisher,
    /** what a start job does: save the row, desired running, current null */
    async want(): Promise<string> {
      const i: Instance = { id: `inst_d${++serial}`, workspaceId: ws.id, projectId: project.id, service: 'web', versionId: version.id, nodeId: NODE, desired: 'running', createdAt: new Date().toISOString(), current: null };
      await store.saveInstance(i);
      state.putInstance(i);
      return i.id;
    },
    /** what a stop job does: desired stopped; the node's report of its removal forgets the row */
    async unwant(id: string): Promise<void> {
      const i = { ...state.instances.get(id)!, desired: 'stopped' as const };
      await store.saveInstance(i);
      state.putInstance(i);
    },
    runningOnNode: (id: string) => {
      const c = state.instances.get(id)?.current;
      return c && c.state === 'running' && c.nodeId === NODE ? c : null;
    },
  };
}

function savedDesired(dataDir: string): { incarnation: string; instances: DesiredInstance[]; stopped: string[] } | null {
  const path = join(dataDir, 'desired.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : null;
}

/** A view of what the agent reports, straight off the (faultless) bus beneath. */
function reportsOf(bus: MemoryBus): Map<string, InstanceReport> {
  const seen = new Map<string, InstanceReport>();
  bus.subscribe(subjects.nodeState(NODE), (m) => {
    const u = m.data as NodeStateUpdate;
    if (u.seq === 0) seen.clear();
    for (const r of u.instances) seen.set(r.instanceId, r);
    for (const id of u.removed) seen.delete(id);
  });
  return seen;
}

describe('desired and current state over a lossy bus', () => {
  const wire = new MemoryBus();
  const controllerBus = new LossyBus(wire, { seed: SEED, ...faults, affects: exchanges });
  const agentBus = new LossyBus(wire, { seed: SEED + 1, ...faults, affects: exchanges });
  const agentDir = join(root, 'agent');
  let controller: Awaited<ReturnType<typeof controllerSide>>;
  let agent: Agent;
  const pids = new Map<string, number>();
  const kept: string[] = [];

  test('instances wanted running are started once and reported running, despite loss, duplication and reordering', async () => {
    controller = await controllerSide(controllerBus);
    agent = new Agent({ nodeId: NODE, name: NODE, bus: agentBus, dataDir: agentDir, heartbeatMs: 100, settleMs: 100, portRange: [38000, 38099] });
    agents.add(agent);
    await agent.start();
    const ids = [await controller.want(), await controller.want(), await controller.want(), await controller.want()];
    for (const id of ids) {
      const c = await until(`${id} reported running to the controller`, () => controller.runningOnNode(id));
      pids.set(id, c.pid!);
    }
    await until('the agent to save all four as desired running', () => savedDesired(agentDir)?.instances.filter((d) => d.desired === 'running').length === 4);
    for (const [id, pid] of pids) {
      assert.ok(alive(pid), `${id} runs`);
      assert.equal(controller.state.instances.get(id)!.current!.restarts, 0, 'started once, never restarted');
    }
  });

  test('instances wanted stopped are stopped, and the node reporting them gone removes their rows', async () => {
    const [a, b, c, d] = [...pids.keys()];
    await controller.unwant(a);
    await controller.unwant(b);
    await until('both rows forgotten after the node reported them gone', () => !controller.state.instances.has(a) && !controller.state.instances.has(b));
    await until('their processes gone', () => !alive(pids.get(a)) && !alive(pids.get(b)));
    const e = await controller.want();
    const ce = await until(`${e} running`, () => controller.runningOnNode(e));
    pids.set(e, ce.pid!);
    kept.push(c, d, e);
    for (const id of kept) {
      assert.equal(controller.runningOnNode(id)?.pid, pids.get(id), `${id} still runs the same process`);
      assert.ok(alive(pids.get(id)));
    }
    // The stopped ones are remembered as stopped: a stale message can never start them again.
    await until('the agent to remember the stops', () => savedDesired(agentDir)?.stopped.includes(a) && savedDesired(agentDir)?.stopped.includes(b));
    for (const bus of [controllerBus, agentBus]) {
      assert.ok(bus.counts.dropped > 0 && bus.counts.duplicated > 0 && bus.counts.reordered > 0, `faults happened: ${JSON.stringify(bus.counts)}`);
    }
  });

  test('a bus reconnect makes the agent ask for the full desired state again', async () => {
    const asked = new Promise<void>((resolve) => {
      const sub = wire.subscribe(subjects.desiredResync, (m) => {
        if ((m.data as { nodeId: string }).nodeId === NODE) {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    agentBus.lossy = false;
    agentBus.emitStatus('reconnected');
    await asked;
    agentBus.lossy = true;
  });

  test('a new controller incarnation with nothing to say stops nothing, nor does a forgotten row', async () => {
    controller.publisher.stop();
    // A controller on an empty store: its full desired state for the node is empty.
    const amnesiac = new DesiredStatePublisher(controllerBus, { desiredFor: () => [], nodeIds: () => [NODE], keepaliveMs: 100 });
    amnesiac.start();
    cleanups.push(() => amnesiac.stop());
    await until('the agent to take the new incarnation', () => savedDesired(agentDir)?.incarnation === amnesiac.incarnation);
    await until('several keepalives of the new incarnation', () => savedDesired(agentDir)?.instances.length === 0);
    const reports = reportsOf(wire);
    wire.publish(subjects.resync(NODE), {});
    await until('a full report from the agent', () => kept.every((id) => reports.has(id)));
    for (const id of kept) {
      assert.equal(reports.get(id)!.current.state, 'running');
      assert.equal(reports.get(id)!.current.pid, pids.get(id), `${id} kept its process`);
      assert.ok(alive(pids.get(id)));
    }
    amnesiac.stop();
  });

  test('an agent restarted with no controller runs what it was last told, from its saved desired state', async () => {
    const told = savedDesired(agentDir)!;
    // Back to a controller that wants the three: the agent saves that.
    controller.publisher.start();
    await until('the agent to save the three as desired again', () => {
      const s = savedDesired(agentDir);
      return s && s.incarnation === controller.publisher.incarnation && kept.every((id) => s.instances.some((d) => d.spec.instanceId === id && d.desired === 'running'));
    });
    assert.notEqual(told.incarnation, controller.publisher.incarnation);
    controller.publisher.stop();
    // The agent goes, its instances with it, and even its own record of them: only the desired state is left.
    await agent.stop({ stopInstances: true });
    agents.delete(agent);
    // A killed process is gone once its parent has reaped it, a moment after stop() returns on a loaded machine.
    await until('the three to be gone with the agent', () => kept.every((id) => !alive(pids.get(id))));
    rmSync(join(agentDir, 'state.json'));

    const lonely = new MemoryBus(); // no controller anywhere
    const reports = reportsOf(lonely);
    const again = new Agent({ nodeId: NODE, name: NODE, bus: lonely, dataDir: agentDir, heartbeatMs: 100, settleMs: 100, portRange: [38000, 38099] });
    agents.add(again);
    await again.start();
    await until('the three running again on the agent alone', () => kept.every((id) => reports.get(id)?.current.state === 'running'));
    const before = new Map(kept.map((id) => [id, reports.get(id)!.current.pid]));
    for (const id of kept) assert.ok(alive(before.get(id)));
    // A second restart, instances left running: they are re-adopted, not started twice.
    await again.stop({ stopInstances: false });
    agents.delete(again);
    const third = new Agent({ nodeId: NODE, name: NODE, bus: lonely, dataDir: agentDir, heartbeatMs: 100, settleMs: 100, portRange: [38000, 38099] });
    agents.add(third);
    await third.start();
    await until('the three reported by the third agent', () => kept.every((id) => reports.get(id)?.current.state === 'running' && reports.get(id)?.current.pid === before.get(id)));
    const update: DesiredStateUpdate = { incarnation: 'someone-else', seq: 0, instances: [], removed: [] };
    lonely.publish(subjects.desired(NODE), update);
    await until('the empty full state saved', () => savedDesired(agentDir)?.incarnation === 'someone-else');
    for (const id of kept) assert.ok(alive(before.get(id)), `${id} still runs`);
  });
});
