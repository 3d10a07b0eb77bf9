// The router of `enjin up` runs in its own process: it keeps routing while the controller's process is frozen, comes
// back on the same port when it dies, and never outlives `enjin up` (Ctrl-C or kill -9).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { EnjinProcess, alive, cleanup, eventually, fixture, tempDir, viaRouter } from './support/enjin.ts';

/** The router process enjin up started: its child whose command line runs router-process. */
function routerPid(upPid: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== upPid) continue;
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('router-process')) return Number(name);
    } catch {
      // exited while we looked
    }
  }
  return undefined;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe('the router in its own process', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  let app: string;
  const pids = new Set<number>();

  before(async () => {
    dataDir = tempDir('router-proc');
    app = fixture('node-app');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    for (const pid of pids) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    cleanup(dataDir, app);
  });

  test('the router is a child process of enjin up, and the controller reaches it over the bus bridge', async () => {
    const router = routerPid(enjin.child.pid!);
    assert.ok(router, 'enjin up has a router-process child');
    assert.notEqual(router, enjin.child.pid);
    pids.add(router);
    const deployed = await enjin.cli(['deploy', app]);
    assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
    const ps = await enjin.cli(['--json', 'ps']);
    for (const i of ps.json.instances as Array<{ pid: number }>) pids.add(i.pid);
    const res = await eventually(async () => {
      const r = await viaRouter(enjin.routerPort, 'hello.localhost');
      return r.status === 200 && r;
    }, 'hello.localhost through the router');
    assert.match(res.body, /^hi from web/);
    // A request answered in the router process shows in the stats the controller asks it for, over the bridge.
    const stats = await fetch(`${enjin.api}/v1/stats`, { headers: { authorization: `Bearer ${enjin.token}` } });
    const body = (await stats.json()) as { routers: Array<{ routerId: string; services: Record<string, { requests: number }> }> };
    assert.equal(body.routers.length, 1);
    assert.ok(Object.values(body.routers[0].services).some((s) => s.requests > 0), JSON.stringify(body));
  });

  test('routed requests are answered while the controller and API process is frozen', async () => {
    const upPid = enjin.child.pid!;
    process.kill(upPid, 'SIGSTOP');
    try {
      for (let k = 0; k < 5; k++) {
        const r = await viaRouter(enjin.routerPort, 'hello.localhost', '/', { timeoutMs: 30_000 });
        assert.equal(r.status, 200);
        assert.match(r.body, /^hi from web/);
      }
    } finally {
      process.kill(upPid, 'SIGCONT');
    }
    assert.equal((await fetch(`${enjin.api}/healthz`)).status, 200, 'the API answers again once resumed');
  });

  test('a router process that dies is restarted on the same port and routes at once from its saved table', async () => {
    const first = routerPid(enjin.child.pid!)!;
    process.kill(first, 'SIGKILL');
    const second = await eventually(() => {
      const pid = routerPid(enjin.child.pid!);
      return pid !== undefined && pid !== first && pid;
    }, 'a new router process');
    pids.add(second);
    const r = await eventually(async () => {
      const res = await viaRouter(enjin.routerPort, 'hello.localhost');
      return res.status === 200 && res;
    }, 'routing after the restart');
    assert.match(r.body, /^hi from web/);
    assert.match(enjin.output, /router process exited \(SIGKILL\); restarting it/);
  });

  test('Ctrl-C stops the router process and frees its port', async () => {
    const router = routerPid(enjin.child.pid!)!;
    const stopped = await enjin.stop('SIGINT');
    assert.equal(stopped.code, 0, enjin.output);
    await eventually(() => !alive(router), 'the router process to exit');
    assert.equal(await portIsFree(enjin.routerPort), true);
  });
});

describe('killing enjin up with SIGKILL', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  let router: number | undefined;

  before(async () => {
    dataDir = tempDir('router-orphan');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGKILL');
    if (router !== undefined && alive(router)) process.kill(router, 'SIGKILL');
    cleanup(dataDir);
  });

  test('leaves no router process behind and frees the router port', async () => {
    router = routerPid(enjin.child.pid!);
    assert.ok(router, 'enjin up has a router-process child');
    assert.equal((await viaRouter(enjin.routerPort, 'nobody.localhost')).status, 404);
    await enjin.stop('SIGKILL');
    await eventually(() => !alive(router!), 'the orphaned router process to exit');
    assert.equal(await portIsFree(enjin.routerPort), true);
  });
});
