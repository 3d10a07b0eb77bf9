// The cluster under faults, as issue 6 checks it: three hosts (network namespaces, each an agent with its router),
// two controllers, a private PostgreSQL and nats-server; for each fault a line of figures: requests failed,
// acknowledged writes lost, duplicate instances left, seconds to recover.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, eventually, fixture } from './support/enjin.ts';
import { netnsUnavailable } from './support/netns.ts';
import { Cluster, clusterCommandsUnavailable, type InstanceView } from './support/cluster.ts';
import { SteadyLoad, describeFailures, httpGet, type LoadCounts } from './support/load.ts';

const PROJECT = 'faults';
const HOSTNAME = `web.${PROJECT}.localhost`;
const HOSTS = ['h1', 'h2', 'h3'];

const skip = netnsUnavailable() ?? clusterCommandsUnavailable();

/** The node fixture as a cluster app: one web service, listening on every address so other hosts' routers reach it. */
function clusterApp(greeting: string, opts: { prepareDelayMs?: number } = {}): string {
  const dir = fixture('node-app');
  rmSync(join(dir, 'worker.js'));
  writeFileSync(join(dir, 'enjin.yaml'), [
    `project: ${PROJECT}`, 'prepare:', '  - node prepare.js', 'env:', `  GREETING: ${greeting}`,
    'services:', '  web:', '    command: node server.js', '    instances: 3', '    health: { http: /healthz }', '',
  ].join('\n'));
  const server = readFileSync(join(dir, 'server.js'), 'utf8');
  assert.ok(server.includes("'127.0.0.1'"), 'the fixture server listens on loopback; the cluster app rewrites that');
  writeFileSync(join(dir, 'server.js'), server.replace("'127.0.0.1'", "'0.0.0.0'"));
  if (opts.prepareDelayMs) {
    // A slow prepare keeps the deploy running long enough to kill its leader in the middle of it.
    const prepare = readFileSync(join(dir, 'prepare.js'), 'utf8');
    writeFileSync(join(dir, 'prepare.js'), `Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${opts.prepareDelayMs});\n${prepare}`);
  }
  return dir;
}

interface JobTree {
  state: string;
  error?: string | null;
  children?: JobTree[];
}

const anyRunning = (job: JobTree): boolean => job.state === 'running' || (job.children ?? []).some(anyRunning);
/** The root's reason, else the first a job of its tree gives. */
const firstError = (job: JobTree): string | null => job.error || (job.children ?? []).map(firstError).find(Boolean) || null;

interface Figures {
  requests: number;
  failed: number;
  writesLost: number;
  duplicates: number;
  recoverSeconds: number | null;
}

// Seven scenarios of about a minute each on an idle machine; a loaded 2-core one (CI beside other work) needs twice that.
describe('cluster faults (hosts as network namespaces)', { skip: skip ?? false, timeout: 15 * 60_000 }, () => {
  let cluster: Cluster;
  let load: SteadyLoad;
  const apps: string[] = [];
  const summary: string[] = [];
  /** desired count of web, as last acknowledged by the API */
  let desiredWeb = 3;
  /** version numbers the API acknowledged */
  const ackedVersions = new Set<number>();
  /** set once the first deploy serves: without it there is nothing to fault, and waiting on each scenario wastes minutes */
  let deployed = false;

  /** set when the cluster could not be brought back to a settled state: later faults would only wait and fail */
  let unsettled = '';

  /**
   * Each fault starts from a settled cluster: hosts a failed scenario left down are brought back first. Skipped (with
   * the reason) when the first deploy never served or the cluster could not settle once, so a broken build fails in
   * minutes, not in every scenario's full wait.
   */
  const precondition = async (t: TestContext): Promise<boolean> => {
    if (!deployed) {
      t.skip('the first deploy did not serve; see its failure');
      return false;
    }
    if (unsettled) {
      t.skip(`the cluster did not settle after an earlier fault: ${unsettled}`);
      return false;
    }
    const restarted = cluster.restoreHosts();
    if (restarted.length) t.diagnostic(`restarted the agents of ${restarted.join(', ')} left down by an earlier fault`);
    load.setTargets(cluster.routers());
    try {
      await settle(HOSTS, `settled before "${t.name}"`, 120_000);
    } catch (err) {
      unsettled = (err as Error).message.split('\n')[0];
      throw err;
    }
    return true;
  };

  before(async () => {
    cluster = await Cluster.start({ hosts: HOSTS.length, controllers: 2 });
    load = new SteadyLoad(HOSTNAME, { intervalMs: 100, timeoutMs: 5000 });
  });

  after(async () => {
    await load?.stop();
    if (summary.length) console.log(`\ncluster fault figures:\n${summary.join('\n')}\n`);
    await cluster?.destroy();
    cleanup(...apps);
  });

  const report = (t: TestContext, name: string, f: Figures & { counts?: LoadCounts }): void => {
    if (f.counts && f.counts.failed > 0) for (const l of `first failures:\n${describeFailures(f.counts)}`.split('\n')) t.diagnostic(`  ${l}`);
    const line = `${name}: requests ${f.requests}, requests failed ${f.failed}, acknowledged writes lost ${f.writesLost}, duplicate instances left ${f.duplicates}, seconds to recover ${f.recoverSeconds === null ? '-' : f.recoverSeconds.toFixed(1)}`;
    summary.push(line);
    t.diagnostic(line);
  };

  const seconds = (since: number): number => (Date.now() - since) / 1000;
  const webRunning = (instances: InstanceView[]): InstanceView[] => instances.filter((i) => i.project === PROJECT && i.service === 'web' && i.state === 'running' && i.desired === 'running');
  const realPids = (hosts: string[] = HOSTS): number[] => [...cluster.appPidsByHost(hosts).values()].flat();

  /** Acknowledged writes that the cluster no longer shows: versions missing, or a desired count other than the last acknowledged. */
  const writesLost = async (): Promise<number> => {
    let lost = 0;
    const versions = await cluster.cli(['--json', 'versions', '--project', PROJECT]);
    const numbers = new Set<number>((versions.json?.versions ?? []).map((v: { number: number }) => v.number));
    for (const v of ackedVersions) if (!numbers.has(v)) lost++;
    const project = await cluster.api('GET', `/v1/projects/${PROJECT}`);
    const web = project.json?.project?.services?.find((s: { name: string }) => s.name === 'web');
    if (web?.desired !== desiredWeb) lost++;
    return lost;
  };

  /**
   * Settled: every given host's node ready, exactly the desired number of app processes really running on them (no
   * more anywhere), as many reported running, no job of the project waiting or running, and every given router
   * answering 200 several times in a row.
   */
  const settle = async (hosts: string[], what: string, timeoutMs = 120_000): Promise<void> => {
    // What kept it from being settled at the last look, for the failure message.
    let unmet = '';
    await eventually(async () => {
      const nodes = await cluster.nodes();
      const notReady = hosts.filter((h) => cluster.stateOfHost(nodes, h) !== 'ready');
      if (notReady.length) return !(unmet = `not ready: ${notReady.join(', ')}`);
      const pids = realPids().length;
      if (pids !== desiredWeb) return !(unmet = `${pids} app processes, not ${desiredWeb}`);
      const running = webRunning(await cluster.ps(PROJECT)).length;
      if (running !== desiredWeb) return !(unmet = `${running} instances reported running, not ${desiredWeb}`);
      // A reconcile still finishing (a healed node's tombstones, say) would hold the next scenario's deploy in the queue.
      const busy = await cluster.cli(['--json', 'jobs', '--project', PROJECT, '--state', 'queued,waiting,running']);
      if (busy.code !== 0) return !(unmet = `jobs: ${busy.stderr}`);
      if (busy.json.jobs.length > 0) return !(unmet = `jobs still going: ${busy.json.jobs.map((j: { title: string; state: string }) => `${j.title} (${j.state})`).join(', ')}`);
      for (const r of cluster.routers(hosts)) {
        for (let k = 0; k < 3; k++) {
          const status = (await httpGet(r.host, r.port, HOSTNAME, '/', 5000)).status;
          if (status !== 200) return !(unmet = `router ${r.host}:${r.port} answered ${status}`);
        }
      }
      return true;
    }, what, timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}\nlast unmet: ${unmet}\napp pids by host: ${JSON.stringify([...cluster.appPidsByHost().entries()])}\n${cluster.diagnostics()}`);
    });
  };

  const duplicatesLeft = (): number => Math.max(0, realPids().length - desiredWeb);

  const assertNoFailures = (counts: LoadCounts, what: string): void => {
    assert.equal(counts.failed, 0, `${what}: ${counts.failed} of ${counts.requests} requests failed:\n${describeFailures(counts)}`);
  };

  test('deploy 3 instances over 3 hosts; every router reaches every instance', async (t) => {
    const app = clusterApp('hi');
    apps.push(app);
    const started = Date.now();
    const r = await cluster.cli(['--json', 'deploy', app], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, `${r.stderr}${r.stdout}\n${cluster.diagnostics()}`);
    ackedVersions.add(r.json.version.number);
    await settle(HOSTS, 'three instances serving through every router');
    deployed = true;
    const nodes = await cluster.nodes();
    const web = webRunning(await cluster.ps(PROJECT));
    assert.deepEqual(web.map((i) => cluster.hostOfInstance(nodes, i)).sort(), HOSTS, `one instance per host: ${JSON.stringify(web)}`);
    for (const h of HOSTS) {
      const procs = cluster.appProcesses(h);
      assert.equal(procs.length, 1, `one app process really runs on ${h}`);
      // The reported pid is the app's or its `sh -c` parent's, on the host enjin says.
      const reported = web.find((i) => cluster.hostOfInstance(nodes, i) === h)!;
      assert.ok(reported.pid === procs[0].pid || reported.pid === procs[0].ppid, `${h}: enjin reports pid ${reported.pid}, the app runs as ${JSON.stringify(procs)}`);
    }

    load.setTargets(cluster.routers());
    load.start();
    load.mark();
    await eventually(() => HOSTS.every((h) => load.peek().pids.get(h)?.size === 3), 'every router reaching all three instances', 60_000);
    const counts = load.mark();
    assertNoFailures(counts, 'steady load after the deploy');
    report(t, 'deploy over 3 hosts', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: seconds(started) });
  });

  test('kill -9 of an agent: its instances are re-adopted, not restarted (same pids)', async (t) => {
    if (!(await precondition(t))) return;
    const victim = 'h1';
    const before = webRunning(await cluster.ps(PROJECT));
    const pidsBefore = new Set(realPids());
    const onVictim = cluster.appPids(victim);
    assert.equal(onVictim.length, 1);
    // The victim's router lives with its agent: send the load through the others meanwhile.
    load.setTargets(cluster.routers(HOSTS.filter((h) => h !== victim)));
    load.mark();
    const started = Date.now();
    await cluster.killAgent(victim);
    assert.deepEqual(cluster.appPids(victim), onVictim, 'the instance outlives its agent');
    cluster.startAgent(victim);
    await cluster.waitForNodes(HOSTS);
    await eventually(async () => {
      const now = webRunning(await cluster.ps(PROJECT));
      return now.length === 3 && now.every((i) => before.some((b) => b.id === i.id && b.pid === i.pid && b.restarts === i.restarts));
    }, 'the same instances with the same pids reported again', 120_000);
    // The victim's router comes back with its agent: sent load again once it serves (settled), not while it starts.
    await settle(HOSTS, 'settled after the agent came back');
    load.setTargets(cluster.routers());
    const counts = load.mark();
    assert.deepEqual(new Set(realPids()), pidsBefore, 'no instance was restarted anywhere');
    report(t, 'kill -9 of an agent', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: seconds(started) });
    assert.equal(duplicatesLeft(), 0);
    assert.equal(await writesLost(), 0);
  });

  test('a host killed (all its processes, link down): replacements serve on the others; back, it keeps no copy', async (t) => {
    if (!(await precondition(t))) return;
    const victim = 'h3';
    const others = HOSTS.filter((h) => h !== victim);
    assert.equal(cluster.appPids(victim).length, 1, `${victim} runs an instance`);
    load.setTargets(cluster.routers(others));
    load.mark();
    const started = Date.now();
    cluster.net.killHost(victim);
    await eventually(async () => cluster.stateOfHost(await cluster.nodes(), victim) === 'down', `${victim} marked down`, 90_000);
    await settle(others, 'three instances serving on the two hosts left', 120_000);
    const recovered = seconds(started);
    const counts = load.mark();
    // Settled means every router answered several times in a row; from now on none may fail.
    await eventually(() => load.peek().requests >= 20, 'more requests', 30_000);
    assertNoFailures(load.mark(), 'after the replacements serve');
    report(t, 'host killed', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: recovered });

    // The host comes back (power on): same agent command line and data; what it ran was replaced, so it keeps no copy.
    cluster.net.linkUp(victim);
    cluster.startAgent(victim);
    await settle(HOSTS, `${victim} back, ready, and running no duplicate`, 120_000);
    load.setTargets(cluster.routers());
    assert.equal(duplicatesLeft(), 0);
    assert.equal(await writesLost(), 0);
  });

  test('a host partitioned for 40 s, then healed: no duplicates after', async (t) => {
    if (!(await precondition(t))) return;
    const byHost = cluster.appPidsByHost();
    const victim = HOSTS.reduce((a, b) => ((byHost.get(b)?.length ?? 0) > (byHost.get(a)?.length ?? 0) ? b : a));
    const others = HOSTS.filter((h) => h !== victim);
    const victimPids = byHost.get(victim)!;
    assert.ok(victimPids.length >= 1, `${victim} runs an instance`);
    load.setTargets(cluster.routers(others));
    load.mark();
    const started = Date.now();
    cluster.net.linkDown(victim);
    // The partition lasts 40 s whatever happens; meanwhile the others should notice and replace.
    let replacedAfter: number | null = null;
    while (Date.now() - started < 40_000) {
      if (replacedAfter === null) {
        const nodes = await cluster.nodes().catch(() => null);
        if (nodes && cluster.stateOfHost(nodes, victim) === 'down' && cluster.appPids(others[0]).length + cluster.appPids(others[1]).length === desiredWeb) replacedAfter = seconds(started);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.deepEqual(cluster.appPids(victim).sort(), [...victimPids].sort(), 'cut off, the host keeps running what it ran');
    const healed = Date.now();
    cluster.net.linkUp(victim);
    // The healed host's router is counted at once: if it still routes to what it ran before, users see it.
    load.setTargets(cluster.routers());
    await settle(HOSTS, 'healed: every host ready, no duplicate left', 120_000);
    const counts = load.mark();
    t.diagnostic(`replacements running ${replacedAfter === null ? 'not within the 40 s' : `after ${replacedAfter.toFixed(1)} s`}`);
    report(t, 'host partitioned 40 s', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: seconds(healed) });
    assert.equal(duplicatesLeft(), 0);
    assert.equal(await writesLost(), 0);
  });

  test('the leader controller killed during a deploy: another leads, the tree ends with a reason, a new deploy works', async (t) => {
    if (!(await precondition(t))) return;
    const leader = await cluster.waitForLeader();
    const follower = cluster.controllers.find((c) => c !== leader && cluster.live(c));
    assert.ok(follower, 'a second controller runs');
    const slow = clusterApp('hello', { prepareDelayMs: 15_000 });
    apps.push(slow);
    const d = await cluster.cli(['--json', 'deploy', slow, '--detach'], { controller: leader });
    assert.equal(d.code, 0, d.stderr + d.stdout);
    ackedVersions.add(d.json.version.number);
    const rootId: string = d.json.job.id;
    await eventually(async () => {
      // Asked of the leader: it runs the jobs, a follower's copy may lag past the slow prepare.
      const show = await cluster.cli(['--json', 'jobs', 'show', rootId], { controller: leader });
      return show.json?.job && anyRunning(show.json.job);
    }, 'a job of the deploy running', 60_000);
    load.mark();
    const killedAt = Date.now();
    await cluster.killController(leader);
    const next = await cluster.waitForLeader(60_000);
    const takeover = seconds(killedAt);
    assert.equal(next, follower);
    t.diagnostic(`new leader after ${takeover.toFixed(1)} s`);
    assert.ok(takeover <= 30, `another controller leads within 30 s on a loaded machine (the issue asks 10 s): ${takeover} s`);
    const tree = await eventually(async () => {
      const show = await cluster.cli(['--json', 'jobs', 'show', rootId]);
      const job = show.json?.job;
      return job && ['succeeded', 'failed', 'aborted'].includes(job.state) ? job : null;
    }, 'the dead leader\'s deploy tree ending', 120_000);
    assert.ok(!anyRunning(tree), `nothing of the tree is left running: ${JSON.stringify(tree)}`);
    const reason = firstError(tree);
    if (tree.state !== 'succeeded') assert.ok(reason, `the tree ends ${tree.state} with a reason: ${JSON.stringify(tree)}`);
    t.diagnostic(`the interrupted deploy ended ${tree.state}${reason ? `: ${reason}` : ''}`);

    const fresh = clusterApp('howdy');
    apps.push(fresh);
    const r = await cluster.cli(['--json', 'deploy', fresh], { timeoutMs: 240_000 });
    assert.equal(r.code, 0, `${r.stderr}${r.stdout}\n${cluster.diagnostics()}`);
    const version: number = r.json.version.number;
    ackedVersions.add(version);
    await settle(HOSTS, 'the new version serving everywhere', 120_000);
    for (const router of cluster.routers()) {
      const res = await httpGet(router.host, router.port, HOSTNAME);
      assert.match(res.body, new RegExp(`^howdy from web v${version} `), `${router.name} serves the new version`);
    }
    const counts = load.mark();
    report(t, 'leader killed during a deploy', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: seconds(killedAt) });
    assert.equal(await writesLost(), 0);
  });

  test('PostgreSQL stopped for 60 s under steady load: no request fails, writes are refused clearly, all fine after', async (t) => {
    if (!(await precondition(t))) return;
    load.mark();
    const stoppedAt = Date.now();
    await cluster.pg.pause();
    // The controller may take a moment to notice; until then a write may fail otherwise, but never be acknowledged.
    const refused = await eventually(async () => {
      const res = await cluster.api('POST', `/v1/projects/${PROJECT}/scale`, { services: { web: 4 } });
      if (res.status >= 200 && res.status < 300) desiredWeb = 4; // acknowledged: it must survive like any other
      return (res.status >= 200 && res.status < 300) || (res.status === 503 && res.json?.error?.code === 'store_unavailable') ? res : null;
    }, 'a write refused with 503 store_unavailable', 40_000);
    assert.equal(refused.status, 503, `a desired-state write was acknowledged with the store down: ${JSON.stringify(refused.json)}`);
    assert.ok(refused.json.error.message.length > 0);
    const read = await cluster.api('GET', `/v1/projects/${PROJECT}`);
    assert.equal(read.status, 200, `reads are answered from memory: ${JSON.stringify(read.json)}`);
    assert.equal((await cluster.api('GET', '/v1/instances')).status, 200);
    while (Date.now() - stoppedAt < 60_000) await new Promise((r) => setTimeout(r, 1000));
    const during = load.peek();
    assertNoFailures(during, 'with PostgreSQL stopped');
    const resumedAt = Date.now();
    await cluster.pg.resume();
    await eventually(async () => {
      const res = await cluster.api('POST', `/v1/projects/${PROJECT}/scale`, { services: { web: 4 } });
      return res.status >= 200 && res.status < 300;
    }, 'a write accepted once PostgreSQL is back', 120_000);
    desiredWeb = 4;
    const writable = seconds(resumedAt);
    await settle(HOSTS, 'four instances after the store came back', 120_000);
    const counts = load.mark();
    report(t, 'PostgreSQL stopped 60 s', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: writable });
    assertNoFailures(counts, 'PostgreSQL outage and recovery');
    assert.equal(await writesLost(), 0);
    assert.equal(duplicatesLeft(), 0);
  });

  test('NATS stopped for 30 s under steady load: no request fails, everyone resyncs after', async (t) => {
    if (!(await precondition(t))) return;
    load.mark();
    const stoppedAt = Date.now();
    await cluster.nats.pause();
    while (Date.now() - stoppedAt < 30_000) await new Promise((r) => setTimeout(r, 1000));
    assertNoFailures(load.peek(), 'with NATS stopped');
    const during = await cluster.nodes();
    t.diagnostic(`nodes at the end of the outage: ${HOSTS.map((h) => `${h} ${cluster.stateOfHost(during, h)}`).join(', ')}`);
    const resumedAt = Date.now();
    await cluster.nats.resume();
    // Resync: a desired-state change made now reaches the agents only over the restored bus. The platform may be busy
    // repairing what the outage did: the scale waits in the project's queue, and one that fails is tried again.
    await eventually(async () => {
      const r = await cluster.cli(['--json', 'scale', 'web=3', '--project', PROJECT], { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`${r.stderr}${r.stdout}`.slice(0, 2000));
      return r;
    }, 'scale web=3 accepted and done after the bus came back', 150_000);
    desiredWeb = 3;
    await settle(HOSTS, 'three instances after the bus came back', 120_000);
    const counts = load.mark();
    report(t, 'NATS stopped 30 s', { counts, requests: counts.requests, failed: counts.failed, writesLost: await writesLost(), duplicates: duplicatesLeft(), recoverSeconds: seconds(resumedAt) });
    assertNoFailures(counts, 'NATS outage and resync');
    assert.equal(await writesLost(), 0);
    assert.equal(duplicatesLeft(), 0);
  });
});

if (skip) test(`cluster fault suite skipped: ${skip}`, { skip }, () => {});
