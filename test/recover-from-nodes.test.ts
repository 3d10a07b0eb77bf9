// End to end, with the real binary: a cluster (a controller on a private PostgreSQL and nats-server, two agents with
// routers) runs an app at two versions; the controller is killed and its database lost. A new controller on an empty
// database with --recover-from-nodes rebuilds nodes, the project, its versions (same numbers) and its placements (same
// instances, same processes) from what the agents keep, while the routers never stop serving; writes work after, and
// a node that joins later fetches the version's package, which came back from the nodes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres, type TestPostgres } from './support/postgres.ts';
import { startNats, type TestNats } from './support/nats.ts';
import { alive, cleanup, eventually, fixture, runCli, tempDir, viaRouter } from './support/enjin.ts';
import { startRole, stopRoles, type Role } from './support/roles.ts';

let pg: TestPostgres;
let nats: TestNats;
const lostDir = tempDir('recover-lost-ctl');
const newDir = tempDir('recover-new-ctl');
const agentDirs = [tempDir('recover-agent-1'), tempDir('recover-agent-2'), tempDir('recover-agent-3')];
const refusedDir = tempDir('recover-refused');
const apps: string[] = [];

interface Ps { id: string; node: string; service: string; version: number; state: string; desired: string; pid: number | null }

before(async () => {
  [pg, nats] = await Promise.all([startPostgres(), startNats()]);
});

after(async () => {
  await stopRoles();
  await nats?.stop();
  await pg?.stop();
  cleanup(lostDir, newDir, refusedDir, ...agentDirs, ...apps);
});

function agentArgs(k: number, extra: string[] = []): string[] {
  const from = 32000 + k * 100;
  return ['--data', agentDirs[k], 'agent', '--name', `host-${k + 1}`, '--labels', `zone=z${k + 1}`, '--compartment', `dc1/rack-${k + 1}`,
    '--port-range', `${from}-${from + 99}`, '--router-port', '0', '--router-host', '127.0.0.1', '--stop-instances-on-exit', ...extra];
}

async function ps(dataDir: string): Promise<Ps[]> {
  const r = await runCli(['--json', 'ps', 'hello'], { dataDir });
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances;
}

/** Every router answers hello.localhost with 200, counting the failures. */
class Prober {
  requests = 0;
  failures: string[] = [];
  #timer: NodeJS.Timeout | null = null;
  constructor(private readonly ports: number[]) {}
  start(): void {
    this.#timer = setInterval(() => {
      for (const port of this.ports) {
        this.requests++;
        viaRouter(port, 'hello.localhost', '/', { timeoutMs: 5000 })
          .then((r) => { if (r.status !== 200) this.failures.push(`${port}: ${r.status} ${r.body.slice(0, 100)}`); })
          .catch((err: Error) => this.failures.push(`${port}: ${err.message}`));
      }
    }, 200);
  }
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }
}

test('a controller on an empty database rebuilds the cluster from its nodes, which never stop serving', { timeout: 900_000 }, async (t) => {
  // --- a cluster running an app at v2, with history (v1) on the nodes ---
  const lost = await startRole(['--data', lostDir, 'controller', '--database-url', pg.url, '--nats', nats.url, '--api-port', '0']);
  const token = await runCli(['--json', 'nodes', 'token', '--reusable'], { dataDir: lostDir });
  assert.equal(token.code, 0, token.stderr);
  const agents: Role[] = [];
  for (const k of [0, 1]) agents.push(await startRole([...agentArgs(k), '--join', lost.answer.api, '--token', token.json.token]));
  const nodeIds = agents.map((a) => a.answer.nodeId as string);
  await eventually(async () => {
    const r = await runCli(['--json', 'nodes'], { dataDir: lostDir });
    return r.json?.nodes?.filter((n: { state: string }) => n.state === 'ready').length === 2;
  }, 'two nodes ready', 120_000);

  const app = tempDir('recover-app');
  apps.push(app);
  cpSync(fixture('node-app'), app, { recursive: true });
  const v1 = await runCli(['deploy', app], { dataDir: lostDir, timeoutMs: 300_000 });
  assert.equal(v1.code, 0, v1.stderr + v1.stdout);
  writeFileSync(join(app, 'release.txt'), 'two\n');
  const v2 = await runCli(['deploy', app], { dataDir: lostDir, timeoutMs: 300_000 });
  assert.equal(v2.code, 0, v2.stderr + v2.stdout);
  const scaled = await runCli(['scale', 'web=3', '--project', 'hello'], { dataDir: lostDir, timeoutMs: 300_000 });
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  const before = await eventually(async () => {
    const list = await ps(lostDir);
    const running = list.filter((i) => i.desired === 'running');
    return running.length === 4 && running.every((i) => i.state === 'running' && i.version === 2 && i.pid) ? running : undefined;
  }, 'web ×3 and worker ×1 running at v2', 180_000);
  const routerPorts = agents.map((a) => a.answer.routerPort as number);
  for (const port of routerPorts) assert.equal((await viaRouter(port, 'hello.localhost')).status, 200);

  // --- the controller and its database are lost; the routers keep serving throughout ---
  const prober = new Prober(routerPorts);
  prober.start();
  const emptyDb = await pg.createDatabase();
  try {
    lost.child.kill('SIGKILL');
    const started = Date.now();
    const fresh = await startRole(['--data', newDir, 'controller', '--database-url', emptyDb, '--nats', nats.url, '--api-port', '0', '--recover-from-nodes', '--recover-window', '5m', '--recover-quiet', '3s']);
    const cluster = await eventually(async () => {
      const r = await runCli(['--json', 'cluster'], { dataDir: newDir });
      // On a loaded machine the second node may prove its key after the first rebuild (3 s of quiet): it is merged
      // by a later one, so the rebuild is complete once both nodes and all their instances are in.
      const rec = r.json?.recovery;
      return rec?.phase === 'rebuilt' && rec.nodes === 2 && rec.instances === 4 ? r.json : undefined;
    }, () => `the rebuild written with both nodes\n${fresh.output()}`, 120_000);
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`rebuilt from ${cluster.recovery.nodes} nodes in ${seconds.toFixed(1)} s: ${cluster.recovery.projects} project, ${cluster.recovery.versions} versions, ${cluster.recovery.instances} instances; problems: ${JSON.stringify(cluster.recovery.problems)}`);
    assert.deepEqual(cluster.recovery.problems, []);
    assert.deepEqual(cluster.recovery.versionsWithoutPackage, []);
    assert.equal(cluster.recovery.nodes, 2);
    assert.equal(cluster.recovery.instances, 4);

    // Nodes as they joined: names, labels, compartments, roles; ready.
    const nodes = (await runCli(['--json', 'nodes'], { dataDir: newDir })).json.nodes as Array<Record<string, any>>;
    assert.deepEqual(nodes.map((n) => [n.id, n.name, n.labels.zone, n.compartment, n.roles.join('+')]).sort(), [
      [nodeIds[0], 'host-1', 'z1', 'dc1/rack-1', 'agent+router'],
      [nodeIds[1], 'host-2', 'z2', 'dc1/rack-2', 'agent+router'],
    ]);
    // The versions with their numbers, v2 current.
    const versions = await runCli(['--json', 'versions', '--project', 'hello'], { dataDir: newDir });
    assert.equal(versions.code, 0, versions.stderr);
    assert.deepEqual((versions.json.versions as Array<{ number: number }>).map((v) => v.number).sort(), [1, 2]);
    // The same instances, on the same nodes, with the same processes: nothing was restarted.
    const after = await eventually(async () => {
      const list = (await ps(newDir)).filter((i) => i.desired === 'running');
      return list.length === 4 && list.every((i) => i.state === 'running') ? list : undefined;
    }, 'the four instances reported running to the new controller', 60_000);
    const key = (i: Ps) => `${i.id} ${i.node} ${i.service} v${i.version} pid ${i.pid}`;
    assert.deepEqual(after.map(key).sort(), before.map(key).sort());
    for (const i of after) assert.ok(i.pid && alive(i.pid));
    // A while later, still the same: the reconciler found nothing to change.
    await new Promise((r) => setTimeout(r, 8000));
    assert.deepEqual((await ps(newDir)).filter((i) => i.desired === 'running').map(key).sort(), before.map(key).sort());
  } finally {
    prober.stop();
  }
  await new Promise((r) => setTimeout(r, 1000));
  t.diagnostic(`requests through the routers while the controller was rebuilt: ${prober.requests}, failed ${prober.failures.length}`);
  assert.deepEqual(prober.failures, [], 'every request through the routers answered 200');

  // --- writes work, and the package came back: a node that joins now can run v2 ---
  const again = await runCli(['--json', 'nodes', 'token'], { dataDir: newDir });
  assert.equal(again.code, 0, again.stderr);
  const third = await startRole([...agentArgs(2), '--join', (await runCli(['--json', 'cluster'], { dataDir: newDir })).json.self.apiUrl, '--token', again.json.token]);
  const thirdId = third.answer.nodeId as string;
  await eventually(async () => (await runCli(['--json', 'nodes'], { dataDir: newDir })).json?.nodes?.some((n: { id: string; state: string }) => n.id === thirdId && n.state === 'ready'), 'the third node ready', 120_000);
  const more = await runCli(['scale', 'web=5', '--project', 'hello'], { dataDir: newDir, timeoutMs: 300_000 });
  assert.equal(more.code, 0, more.stderr + more.stdout);
  const onThird = await eventually(async () => {
    const list = (await ps(newDir)).filter((i) => i.desired === 'running' && i.service === 'web');
    return list.length === 5 && list.every((i) => i.state === 'running') ? list.filter((i) => i.node === thirdId) : undefined;
  }, 'five web instances running', 180_000);
  assert.ok(onThird.length >= 1, 'the new node runs v2, whose package it fetched from the new controller');
  assert.equal((await viaRouter(third.answer.routerPort as number, 'hello.localhost')).status, 200);

  // --- a second recovery into a store that has rows is refused, and changes nothing ---
  const refused = await runCli(['controller', '--database-url', emptyDb, '--nats', nats.url, '--api-port', '0', '--recover-from-nodes'], { dataDir: refusedDir, timeoutMs: 120_000 });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /store_not_empty|rebuilds an empty store/);
  assert.equal((await ps(newDir)).filter((i) => i.desired === 'running').length, 6);
});
