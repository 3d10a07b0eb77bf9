// The core loop end to end, as a user runs it: `enjin up`, deploy a directory, reach it by hostname, operate it,
// survive kill -9 of an instance and of enjin itself, refuse bad input without changing anything.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { EnjinProcess, alive, cleanup, eventually, fixture, tempDir, viaRouter } from './support/enjin.ts';

describe('core loop on one machine', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  let app: string;
  const pids = new Set<number>();

  before(async () => {
    dataDir = tempDir('data');
    app = fixture('node-app');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    for (const pid of pids) if (alive(pid)) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } }
    cleanup(dataDir, app);
  });

  const ps = async () => (await enjin.cli(['--json', 'ps'])).json.instances as Array<{ id: string; service: string; state: string; pid: number; version: number; restarts: number; desired: string; lastExit: { code: number | null; signal: string | null; at: string } | null }>;
  const running = async (service: string) => (await ps()).filter((i) => i.service === service && i.state === 'running' && i.desired === 'running');

  test('healthz answers and the API refuses requests without the token', async () => {
    const ok = await fetch(`${enjin.api}/healthz`);
    assert.equal(ok.status, 200);
    const denied = await fetch(`${enjin.api}/v1/projects`);
    assert.equal(denied.status, 401);
    assert.equal((await denied.json()).error.code, 'unauthorized');
    const spec = await fetch(`${enjin.api}/openapi.json`, { headers: { authorization: `Bearer ${enjin.token}` } });
    assert.equal(spec.status, 200);
    assert.ok((await spec.json()).paths['/v1/projects/{project}/deploys']);
  });

  test('unknown hostnames get 404 from the router', async () => {
    const r = await viaRouter(enjin.routerPort, 'nobody.localhost');
    assert.equal(r.status, 404);
    assert.match(r.body, /nobody\.localhost/);
  });

  test('deploy shows the job tree, runs prepare, starts every service and routes by hostname', async () => {
    const r = await enjin.cli(['deploy', app]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout + r.stderr, /prepare hello v1/);
    assert.match(r.stdout + r.stderr, /prepared the app/, 'the prepare command output is in the job log');
    assert.equal((r.stdout + r.stderr).split('prepared the app').length - 1, 1, 'each streamed log line is shown once');
    const web = await running('web');
    assert.equal(web.length, 2);
    assert.equal((await running('worker')).length, 1);
    for (const i of await ps()) pids.add(i.pid);
    const seen = new Set<string>();
    for (let k = 0; k < 20; k++) {
      const res = await viaRouter(enjin.routerPort, 'hello.localhost');
      assert.equal(res.status, 200);
      assert.match(res.body, /^hi from web v1 pid \d+ prepared true/);
      seen.add(res.body.split(' ')[5]);
    }
    assert.equal(seen.size, 2, 'requests are spread over both instances');
    assert.equal((await viaRouter(enjin.routerPort, 'eu.hello.localhost')).status, 200, 'one-level wildcard');
    assert.equal((await viaRouter(enjin.routerPort, 'web.hello.localhost')).status, 200, 'generated SERVICE.PROJECT.DOMAIN');
    assert.equal((await viaRouter(enjin.routerPort, 'a.b.hello.localhost')).status, 404, 'wildcards match one level only');
  });

  test('WebSocket upgrades pass through the router', async () => {
    const sock = net.connect(enjin.routerPort, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /ws HTTP/1.1\r\nHost: hello.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    let got = '';
    sock.on('data', (d) => (got += d));
    await eventually(() => got.includes('\r\n\r\n'), 'the 101 response');
    assert.match(got, /^HTTP\/1.1 101/);
    got = '';
    sock.write('ping through the router');
    await eventually(() => got === 'ping through the router', 'the echo');
    sock.destroy();
  });

  test('ps, projects, versions, jobs and logs answer in JSON', async () => {
    const projects = (await enjin.cli(['--json', 'projects'])).json.projects;
    assert.equal(projects[0].name, 'hello');
    assert.equal(projects[0].version, 1);
    const versions = (await enjin.cli(['--json', 'versions', '--project', 'hello'])).json.versions;
    assert.equal(versions.length, 1);
    assert.match(versions[0].sha256, /^[0-9a-f]{64}$/);
    const jobs = (await enjin.cli(['--json', 'jobs'])).json.jobs;
    assert.equal(jobs[0].state, 'succeeded');
    const byNode = (await enjin.cli(['--json', 'jobs', '--node', 'local'])).json.jobs;
    assert.ok(byNode.length >= 2 && byNode.every((j: { tags: { node?: string } }) => j.tags.node === 'local'), 'jobs filter by node tag');
    assert.deepEqual((await enjin.cli(['--json', 'jobs', '--version', 'v9'])).json.jobs, []);
    const show = await enjin.cli(['--json', 'jobs', 'show', jobs[0].id]);
    assert.equal(show.json.job.kind, 'deploy');
    assert.ok(show.json.job.children.length >= 1);
    const logs = await eventually(async () => {
      const r = await enjin.cli(['logs', 'worker', '--project', 'hello', '-n', '5']);
      return r.stdout.includes('worker tick') ? r : null;
    }, 'worker logs');
    assert.ok(logs.stdout.trim().split('\n').length <= 5);
    // Each line says when it was written and which instance wrote it; --json gives them as fields.
    assert.match(logs.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z worker\.\w{6} \| worker tick/m);
    const jsonLines = (await enjin.cli(['--json', 'logs', 'worker', '--project', 'hello', '-n', '2'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(jsonLines.length > 0 && jsonLines.every((l) => Date.parse(l.time) > 0 && l.instance.startsWith('inst_') && l.service === 'worker' && !/^\d{4}-/.test(l.line)));
    const text = await enjin.cli(['ps']);
    assert.match(text.stdout, /STATE/);
  });

  test('kill -9 of an instance: the agent brings it back', async () => {
    const [victim] = await running('web');
    // `node server.js` is a simple command: exec'd, so the pid enjin reports is the app's, not a `sh -c` wrapper's.
    assert.equal(readFileSync(`/proc/${victim.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '), 'node server.js');
    process.kill(victim.pid, 'SIGKILL');
    const back = await eventually(async () => (await ps()).find((i) => i.id === victim.id && i.state === 'running' && i.pid !== victim.pid), 'the instance restarted');
    assert.equal(back.restarts, 1);
    assert.equal(back.lastExit?.signal, 'SIGKILL', 'ps --json says how the last run ended');
    assert.ok(Date.parse(back.lastExit?.at ?? '') > 0);
    const table = (await enjin.cli(['ps', 'hello'])).stdout;
    assert.match(table, /LAST EXIT/);
    assert.match(table.split('\n').find((l) => l.includes(victim.id)) ?? '', /SIGKILL, \d+s ago/);
    pids.add(back.pid);
  });

  test('scale up, down, and to zero (503 with a body saying so)', async () => {
    let r = await enjin.cli(['scale', 'web=+1', '--project', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await running('web')).length, 3);
    r = await enjin.cli(['scale', 'web=0', '--project', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    const res = await viaRouter(enjin.routerPort, 'hello.localhost');
    assert.equal(res.status, 503);
    assert.match(res.body, /no running instance/i);
    r = await enjin.cli(['scale', 'web=2', '--project', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await viaRouter(enjin.routerPort, 'hello.localhost')).status, 200);
  });

  test('a broken manifest is refused with file, line and column, and changes nothing', async () => {
    const broken = fixture('node-app');
    try {
      appendFileSync(join(broken, 'enjin.yaml'), '    instancez: 3\n');
      const r = await enjin.cli(['deploy', broken]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /enjin\.yaml:\d+:\d+/);
      assert.match(r.stderr, /instancez/);
      const versions = (await enjin.cli(['--json', 'versions', '--project', 'hello'])).json.versions;
      assert.equal(versions.length, 1);
    } finally {
      cleanup(broken);
    }
  });

  test('a tarball with a ../ entry is rejected whole', async () => {
    const { buildHostileTarball } = await import('./support/tarballs.ts');
    const res = await fetch(`${enjin.api}/v1/projects/hello/deploys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${enjin.token}`, 'content-type': 'application/gzip' },
      body: new Blob([new Uint8Array(await buildHostileTarball('../escape.txt'))]),
    });
    assert.equal(res.status, 422);
    const body = await res.json();
    assert.equal(body.error.code, 'package_unsafe');
    const versions = (await enjin.cli(['--json', 'versions', '--project', 'hello'])).json.versions;
    assert.equal(versions.length, 1);
  });

  test('a second version deploys while requests flow, with no failed request; rollback returns to the build of v1 as v3', async () => {
    writeFileSync(join(app, 'enjin.yaml'), (await import('node:fs')).readFileSync(join(app, 'enjin.yaml'), 'utf8').replace('GREETING: hi', 'GREETING: hello'));
    let stop = false;
    const counts = { ok: 0, failed: 0, v1: 0, v2: 0 };
    const failures: string[] = [];
    const load = Promise.all([0, 1, 2, 3].map(async () => {
      while (!stop) {
        try {
          const r = await viaRouter(enjin.routerPort, 'hello.localhost');
          if (r.status === 200) {
            counts.ok++;
            if (r.body.includes(' v1 ')) counts.v1++;
            if (r.body.includes(' v2 ')) counts.v2++;
          } else {
            counts.failed++;
            failures.push(`${r.status} ${r.body.trim()}`);
          }
        } catch (err) {
          counts.failed++;
          failures.push((err as Error).message);
        }
      }
    }));
    const r = await enjin.cli(['deploy', app]);
    await new Promise((res) => setTimeout(res, 300));
    stop = true;
    await load;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(counts.v1 > 0 && counts.v2 > 0, `traffic moved from v1 to v2 (${JSON.stringify(counts)})`);
    assert.equal(counts.failed, 0, `failed requests during the deploy: ${failures.slice(0, 5).join('; ')}`);
    process.stdout.write(`# zero-downtime deploy: ${counts.ok} requests ok, ${counts.failed} failed\n`);
    assert.match((await viaRouter(enjin.routerPort, 'hello.localhost')).body, /^hello from web v2/);
    for (const i of await ps()) assert.equal(i.version, 2, 'no v1 instance is left');

    // A rollback is a release of its own: v3, with v1's build and config.
    const rb = await enjin.cli(['rollback', '--project', 'hello']);
    assert.equal(rb.code, 0, rb.stderr);
    assert.match(rb.stdout, /hello v3 is live \(rollback to v1\)/);
    assert.match((await viaRouter(enjin.routerPort, 'hello.localhost')).body, /^hi from web v3/);
  });

  test('kill -9 of enjin itself: on restart the same processes are adopted, none duplicated, history kept', async () => {
    const before = await ps();
    const jobsBefore = (await enjin.cli(['--json', 'jobs', '-n', '100'])).json.jobs.length;
    const killedAt = new Date().toISOString();
    await enjin.stop('SIGKILL');
    for (const i of before) assert.ok(alive(i.pid), `instance ${i.id} keeps running while enjin is down`);
    enjin = await EnjinProcess.start(dataDir);
    const after = await eventually(async () => {
      const now = await ps();
      return now.length === before.length && now.every((i) => i.state === 'running') ? now : null;
    }, 'all instances running after the restart');
    assert.deepEqual(after.map((i) => `${i.id}:${i.pid}`).sort(), before.map((i) => `${i.id}:${i.pid}`).sort(), 'same instances, same pids');
    const jobsAfter = (await enjin.cli(['--json', 'jobs', '-n', '100'])).json.jobs;
    assert.ok(jobsAfter.length >= jobsBefore);
    const stale = jobsAfter.filter((j: { state: string; createdAt: string }) => j.createdAt < killedAt && (j.state === 'running' || j.state === 'waiting'));
    assert.deepEqual(stale, [], 'no job from before the kill is left running');
    assert.equal((await viaRouter(enjin.routerPort, 'hello.localhost')).status, 200);
  });

  test('a second enjin up on the same data directory fails with a clear message', async () => {
    await assert.rejects(EnjinProcess.start(dataDir), /another enjin .* is using/);
  });

  test('destroy stops every instance and removes the routes', async () => {
    const before = await ps();
    const r = await enjin.cli(['destroy', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    await eventually(() => before.every((i) => !alive(i.pid)), 'instances gone');
    assert.equal((await viaRouter(enjin.routerPort, 'hello.localhost')).status, 404);
    assert.deepEqual((await enjin.cli(['--json', 'projects'])).json.projects, []);
  });
});
