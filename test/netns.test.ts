// The host network the cluster fault suite stands on: namespaces reach each other over the bridge, a partition cuts
// a host off and healing restores it, a killed host loses every process, and nothing is left behind afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HostNetwork, netnsUnavailable, pidsIn, removeLeftovers, runDirOf } from './support/netns.ts';
import { eventually } from './support/enjin.ts';

const skip = netnsUnavailable();

/** An HTTP server answering with its host's name; it also leaves a grandchild in a session of its own. */
const SERVER = `
const http = require('node:http');
const { spawn } = require('node:child_process');
spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' }).unref();
http.createServer((req, res) => res.end('hello from ' + process.env.HOST_NAME)).listen(8099, '0.0.0.0', () => console.log('listening'));
`;

/** A client that prints the body or FAIL; short timeouts, so a partition shows as a failure quickly. */
const CLIENT = `
const url = process.argv[1];
fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.text()).then((t) => console.log('BODY ' + t), (e) => console.log('FAIL ' + e.message));
`;

const names = (cmd: string[]): string => spawnSync('ip', cmd, { encoding: 'utf8' }).stdout;

describe('host network (network namespaces, veth pairs, a bridge)', { skip: skip ?? false }, () => {
  let net: HostNetwork;

  before(() => {
    net = HostNetwork.create(2);
  });

  after(async () => {
    await net?.destroy();
  });

  const fetchFrom = async (from: string, url: string): Promise<string> => {
    const r = await net.run(from, process.execPath, ['-e', CLIENT, url], { timeoutMs: 30_000 });
    return r.output.trim();
  };

  test('each host has its namespace, address and default route; names fit in 15 characters', () => {
    const list = names(['netns', 'list']);
    for (const h of net.hosts) {
      assert.match(list, new RegExp(`^${h.netns}\\b`, 'm'));
      assert.ok(h.link.length <= 15 && `${h.link}p`.length <= 15, h.link);
      assert.match(names(['-n', h.netns, '-4', 'addr', 'show', 'eth0']), new RegExp(h.ip.replaceAll('.', '\\.')));
      assert.match(names(['-n', h.netns, 'route', 'show']), new RegExp(`default via ${net.bridgeIp.replaceAll('.', '\\.')}`));
    }
    assert.ok(net.bridge.length <= 15);
  });

  test('an HTTP server in one namespace answers from the other and from the root namespace', async () => {
    const [h1, h2] = net.hosts;
    const server = net.exec(h1, process.execPath, ['-e', SERVER], { env: { HOST_NAME: h1.name } });
    await eventually(() => server.output().includes('listening'), 'the server in h1 listening', 30_000);
    assert.equal(await fetchFrom(h2.name, `http://${h1.ip}:8099/`), 'BODY hello from h1');
    const res = await fetch(`http://${h1.ip}:8099/`, { signal: AbortSignal.timeout(5000) });
    assert.equal(await res.text(), 'hello from h1');
    // The namespaces are separate: h2's own loopback has no server on that port.
    assert.match(await fetchFrom(h2.name, 'http://127.0.0.1:8099/'), /^FAIL/);
  });

  test('a process sees its host\'s address; cgroups only when asked to share the machine\'s', async () => {
    const probe = `const os = require('node:os'); const fs = require('node:fs');
      const ips = Object.values(os.networkInterfaces()).flat().map((a) => a.address);
      let cgroups = 0; try { cgroups = fs.readdirSync('/sys/fs/cgroup').length; } catch {}
      console.log(JSON.stringify({ ips, cgroups }));`;
    const h1 = net.hosts[0];
    const own = JSON.parse((await net.run(h1, process.execPath, ['-e', probe])).output);
    assert.ok(own.ips.includes(h1.ip) && !own.ips.includes(net.bridgeIp), JSON.stringify(own));
    assert.equal(own.cgroups, 0, 'ip netns exec mounts a fresh /sys: no cgroup tree shared between hosts');
    const shared = JSON.parse((await net.run(h1, process.execPath, ['-e', probe], { shareCgroups: true })).output);
    assert.ok(shared.ips.includes(h1.ip), JSON.stringify(shared));
    const machine = spawnSync('ls', ['/sys/fs/cgroup'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;
    assert.equal(shared.cgroups, machine, 'nsenter --net keeps the machine\'s /sys/fs/cgroup');
  });

  test('a partition makes requests fail both ways; healing restores them', async () => {
    const [h1, h2] = net.hosts;
    net.linkDown(h1);
    assert.match(await fetchFrom(h2.name, `http://${h1.ip}:8099/`), /^FAIL/);
    await assert.rejects(fetch(`http://${h1.ip}:8099/`, { signal: AbortSignal.timeout(2000) }));
    assert.match(await fetchFrom(h1.name, `http://${net.bridgeIp}:1/`), /^FAIL/);
    net.linkUp(h1);
    // The link takes a moment to carry again (carrier, bridge learning): wait for it rather than sleep.
    const body = await eventually(async () => {
      const b = await fetchFrom(h2.name, `http://${h1.ip}:8099/`);
      return b.startsWith('BODY') ? b : null;
    }, 'h1 reachable again after healing', 60_000);
    assert.equal(body, 'BODY hello from h1');
  });

  test('killing a host kills every process in it, even ones in sessions of their own, and downs its link', async () => {
    const [h1, h2] = net.hosts;
    await eventually(() => pidsIn(h1.netns).length >= 2, 'the server and its detached grandchild', 30_000);
    net.killHost(h1);
    assert.deepEqual(pidsIn(h1.netns), []);
    assert.match(names(['link', 'show', h1.link]), /state DOWN|,DOWN|<BROADCAST,MULTICAST,M-DOWN>|NO-CARRIER/);
    assert.match(await fetchFrom(h2.name, `http://${h1.ip}:8099/`), /^FAIL/);
  });

  test('destroy removes the namespaces, veths, bridge, run directory and its processes; leftovers of a dead run are removed at start', async () => {
    const { bridge, hosts } = net;
    // A root-namespace process of the run (as controllers and nats-server are): its command line names the run's directory.
    const rootProc = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', join(net.dir, 'marker')], { stdio: 'ignore', detached: true });
    const rootGone = new Promise((r) => rootProc.once('exit', r));
    await net.destroy();
    await rootGone;
    assert.ok(!existsSync(net.dir), 'the run directory is removed');
    const list = names(['netns', 'list']);
    const links = names(['link', 'show']);
    for (const h of hosts) {
      assert.doesNotMatch(list, new RegExp(`^${h.netns}\\b`, 'm'));
      assert.ok(!links.includes(`${h.link}:`) && !links.includes(`${h.link}@`), `${h.link} is gone`);
    }
    assert.ok(!links.includes(`${bridge}:`), `${bridge} is gone`);

    // A run that died without cleaning up: a namespace and a bridge with no owner note.
    const staleRun = randomBytes(2).toString('hex');
    const stale = `enjin-${staleRun}`;
    spawnSync('ip', ['netns', 'add', `${stale}-h1`]);
    spawnSync('ip', ['link', 'add', stale, 'type', 'bridge']);
    mkdirSync(runDirOf(staleRun));
    const orphan = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', join(runDirOf(staleRun), 'marker')], { stdio: 'ignore', detached: true });
    const orphanGone = new Promise((r) => orphan.once('exit', r));
    try {
      assert.ok(removeLeftovers().includes(staleRun));
      await orphanGone;
      assert.ok(!existsSync(runDirOf(staleRun)));
      assert.doesNotMatch(names(['netns', 'list']), new RegExp(`^${stale}-h1\\b`, 'm'));
      assert.ok(!names(['link', 'show']).includes(`${stale}:`));
    } finally {
      spawnSync('ip', ['netns', 'del', `${stale}-h1`]);
      spawnSync('ip', ['link', 'del', stale]);
      try { process.kill(orphan.pid!, 'SIGKILL'); } catch { /* gone, as it should be */ }
      rmSync(runDirOf(staleRun), { recursive: true, force: true });
    }
  });
});

if (skip) test(`host network tests skipped: ${skip}`, { skip }, () => {});
