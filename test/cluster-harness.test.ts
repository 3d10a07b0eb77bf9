// The parts of the fault suite's harness that do not need enjin: the stoppable PostgreSQL and nats-server (reachable
// from the hosts, down when stopped, back on the same port), and the steady load counting failures through routers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { HostNetwork, netnsUnavailable } from './support/netns.ts';
import { NatsServer, PostgresServer } from './support/cluster-services.ts';
import { SteadyLoad } from './support/load.ts';
import { eventually } from './support/enjin.ts';

const skip = netnsUnavailable();

/** Answers like the cluster app does ("… pid N …"), on port 8080 of its host. */
const SERVER = `require('node:http').createServer((req, res) => res.end('hi from web v1 pid ' + process.pid + ' host ' + req.headers.host)).listen(8080, '0.0.0.0', () => console.log('listening'));`;

/** From inside a host: does a TCP connection to host:port open? Prints OPEN or SHUT. */
const PROBE = `const s = require('node:net').connect(Number(process.argv[2]), process.argv[1]); s.setTimeout(2000); s.on('connect', () => { console.log('OPEN'); s.destroy(); }); s.on('error', () => console.log('SHUT')); s.on('timeout', () => { console.log('SHUT'); s.destroy(); });`;

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = tcpConnect(port, host);
    s.setTimeout(2000);
    s.once('connect', () => { s.destroy(); r(true); });
    s.once('error', () => r(false));
    s.once('timeout', () => { s.destroy(); r(false); });
  });
}

describe('cluster harness: engines and load', { skip: skip ?? false }, () => {
  let net: HostNetwork;

  before(() => {
    net = HostNetwork.create(2);
  });

  after(async () => {
    await net?.destroy();
  });

  test('nats-server on the bridge address: reachable from a host, shut when paused, back on the same port', async () => {
    const nats = await NatsServer.start(net.bridgeIp, join(net.dir, 'nats'));
    try {
      const probe = async (): Promise<string> => (await net.run('h1', process.execPath, ['-e', PROBE, nats.host, String(nats.port)], { timeoutMs: 30_000 })).output.trim();
      assert.equal(await probe(), 'OPEN');
      await nats.pause();
      assert.equal(await probe(), 'SHUT');
      await nats.resume();
      assert.equal(await probe(), 'OPEN');
      assert.match(nats.url, /^nats:\/\/10\.\d+\.\d+\.1:\d+$/);
    } finally {
      await nats.destroy();
    }
    assert.equal(await tcpOpen(nats.host, nats.port), false, 'destroyed: nothing listens');
  });

  test('PostgreSQL stops and starts again on the same port with its data', async () => {
    const server = await PostgresServer.start(join(net.dir, 'pg'));
    try {
      const query = async (sql: string): Promise<pg.QueryResult> => {
        const c = new pg.Client({ connectionString: server.url, connectionTimeoutMillis: 5000 });
        await c.connect();
        try { return await c.query(sql); } finally { await c.end(); }
      };
      await query('create table kept (v int); insert into kept values (42)');
      await server.pause();
      await assert.rejects(query('select 1'));
      await server.resume();
      assert.equal((await query('select v from kept')).rows[0].v, 42);
    } finally {
      await server.destroy();
    }
  });

  test('steady load counts every request and failure per router, and which pids answered', async () => {
    const servers = net.hosts.map((h) => net.exec(h, process.execPath, ['-e', SERVER]));
    await eventually(() => servers.every((s) => s.output().includes('listening')), 'both servers listening', 30_000);
    const load = new SteadyLoad('web.faults.localhost', { intervalMs: 50, timeoutMs: 1000 });
    try {
      load.setTargets(net.hosts.map((h) => ({ name: h.name, host: h.ip, port: 8080 })));
      load.start();
      await eventually(() => load.peek().requests >= 20, 'requests flowing', 30_000);
      const calm = load.mark();
      assert.equal(calm.failed, 0);
      assert.deepEqual(calm.pids.get('h1'), new Set([servers[0].pid]));
      assert.deepEqual(calm.pids.get('h2'), new Set([servers[1].pid]));

      net.linkDown('h2');
      await eventually(() => load.peek().failed >= 2, 'failures through the partitioned host', 30_000);
      net.linkUp('h2');
      await eventually(() => (load.peek().pids.get('h2')?.size ?? 0) > 0 && load.peek().failures.at(-1)!.at < Date.now() - 2000, 'h2 answering again', 60_000);
      const cut = load.mark();
      assert.ok(cut.failures.every((f) => f.target === 'h2'), 'only the partitioned router failed');
      assert.ok(cut.failed >= 2 && cut.requests > cut.failed);

      load.setTargets(net.hosts.filter((h) => h.name === 'h1').map((h) => ({ name: h.name, host: h.ip, port: 8080 })));
      net.killHost('h2');
      await eventually(() => load.peek().requests >= 20, 'requests through h1 alone', 30_000);
      assert.equal(load.mark().failed, 0, 'a router taken out of the targets is not counted');
    } finally {
      await load.stop();
    }
  });
});

if (skip) test(`cluster harness tests skipped: ${skip}`, { skip }, () => {});
