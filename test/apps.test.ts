// Deploying other kinds of apps and deploys that go wrong: a Python app, a Procfile project, a failing prepare, an
// instance that never gets ready, an abort, a hostname another project owns, and the PostgreSQL-backed store.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { BIN, EnjinProcess, alive, cleanup, eventually, fixture, tempDir, viaRouter } from './support/enjin.ts';
import { startPostgres } from './support/postgres.ts';

/** pids whose command line contains `text` */
function processesRunning(text: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(text)) pids.push(Number(name));
    } catch { /* gone */ }
  }
  return pids;
}

describe('apps and failures', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  const dirs: string[] = [];

  before(async () => {
    dataDir = tempDir('apps');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    cleanup(dataDir, ...dirs);
  });

  const copy = (name: string) => {
    const d = fixture(name);
    dirs.push(d);
    return d;
  };
  const edit = (dir: string, file: string, fn: (s: string) => string) => writeFileSync(join(dir, file), fn(readFileSync(join(dir, file), 'utf8')));

  test('a standard-library Python app with a prepare step and two services', async () => {
    const app = copy('python-app');
    const r = await enjin.cli(['deploy', app]);
    assert.equal(r.code, 0, r.stderr);
    const res = await viaRouter(enjin.routerPort, 'py.localhost');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'python built on web\n');
    await eventually(async () => (await enjin.cli(['logs', 'pyapp/clock'])).stdout.includes('tick'), 'clock logs');
  });

  test('a Procfile project, named with --project, answers on its generated hostname', async () => {
    const app = copy('procfile-app');
    const r = await enjin.cli(['deploy', app, '--project', 'procs']);
    assert.equal(r.code, 0, r.stderr);
    const res = await viaRouter(enjin.routerPort, 'web.procs.localhost', '/index.html');
    assert.equal(res.status, 200);
    assert.match(res.body, /served by http.server/);
    const ps = (await enjin.cli(['--json', 'ps', 'procs'])).json.instances;
    assert.deepEqual(ps.map((i: { service: string }) => i.service).sort(), ['clock', 'web']);
  });

  test('nodes keep only the newest three unpacked versions of a project', async () => {
    const app = copy('procfile-app');
    for (let k = 0; k < 4; k++) {
      writeFileSync(join(app, 'index.html'), `release ${k}\n`);
      const r = await enjin.cli(['deploy', app, '--project', 'procs']);
      assert.equal(r.code, 0, r.stderr);
    }
    const versions = (await enjin.cli(['--json', 'versions', '--project', 'procs'])).json.versions as Array<{ id: string; number: number }>;
    assert.equal(versions.length, 5);
    const unpacked = await eventually(() => {
      const present = versions.filter((v) => existsSync(join(dataDir, 'agent', 'versions', v.id))).map((v) => v.number);
      return present.length === 3 ? present : null;
    }, 'old versions collected');
    assert.deepEqual(unpacked.sort(), [3, 4, 5]);
  });

  test('a failing prepare fails the deploy with its output, and the previous version keeps serving', async () => {
    const app = copy('python-app');
    edit(app, 'enjin.yaml', (s) => s.replace(`python3 -c "open('build.txt','w').write('built')"`, `sh -c 'echo compiling; echo "syntax error in main.py" >&2; exit 3'`));
    const r = await enjin.cli(['deploy', app]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /syntax error in main\.py/, 'the failing job log tail is shown');
    assert.match(r.stderr, /exited with code 3/);
    const versions = (await enjin.cli(['--json', 'versions', '--project', 'pyapp'])).json.versions;
    assert.equal(versions.length, 2);
    assert.deepEqual(versions.filter((v: { current: boolean }) => v.current).map((v: { number: number }) => v.number), [1]);
    assert.equal((await viaRouter(enjin.routerPort, 'py.localhost')).body, 'python built on web\n');
  });

  test('an instance that never becomes ready fails the deploy and is cleaned up', async () => {
    const app = copy('python-app');
    edit(app, 'enjin.yaml', (s) => s.replace('command: python3 app.py', 'command: sleep 600').replace('instances: 1', 'instances: 1\n    health: { start_timeout: 2 }'));
    const r = await enjin.cli(['deploy', app]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /start/);
    const ps = await eventually(async () => {
      const list = (await enjin.cli(['--json', 'ps', 'pyapp'])).json.instances as Array<{ version: number; service: string }>;
      return list.every((i) => i.version === 1) ? list : null;
    }, 'only v1 instances left');
    assert.equal(ps.filter((i) => i.service === 'web').length, 1);
    assert.equal((await viaRouter(enjin.routerPort, 'py.localhost')).status, 200);
  });

  test('aborting a deploy stops it at once and changes nothing', async () => {
    const app = copy('python-app');
    edit(app, 'enjin.yaml', (s) => s.replace(`python3 -c "open('build.txt','w').write('built')"`, 'echo preparing slowly; sleep 3617'));
    const started = await enjin.cli(['--json', 'deploy', app, '--detach']);
    assert.equal(started.code, 0, started.stderr);
    const jobId = started.json.job.id;
    await eventually(() => processesRunning('sleep 3617').length > 0, 'the prepare command runs');
    type Tree = { kind: string; state: string; log?: string[]; children: Tree[] };
    const find = (t: Tree, kind: string): Tree | undefined => (t.kind === kind ? t : t.children.map((c) => find(c, kind)).find(Boolean));
    const prepareJob = await eventually(async () => {
      const p = find((await enjin.cli(['--json', 'jobs', 'show', jobId])).json.job, 'prepare');
      return p?.log?.includes('preparing slowly') ? p : null;
    }, 'prepare output in the job log while it runs');
    assert.equal(prepareJob.state, 'running');
    const aborted = await enjin.cli(['--json', 'jobs', 'abort', jobId]);
    assert.equal(aborted.code, 0, aborted.stderr);
    assert.equal(aborted.json.job.state, 'aborted');
    const tree = (await enjin.cli(['--json', 'jobs', 'show', jobId])).json.job;
    const states = JSON.stringify(tree);
    assert.doesNotMatch(states, /"state":"(running|waiting)"/);
    const again = await enjin.cli(['jobs', 'abort', jobId]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /nothing to abort/);
    assert.equal((await viaRouter(enjin.routerPort, 'py.localhost')).body, 'python built on web\n');
    await eventually(() => processesRunning('sleep 3617').length === 0, 'the aborted prepare command is killed');
  });

  test('a hostname another project serves is refused with its line and column', async () => {
    const other = copy('node-app');
    edit(other, 'enjin.yaml', (s) => s.replace('project: hello', 'project: thief').replace('hostnames: [hello.localhost, "*.hello.localhost"]', 'hostnames: [py.localhost]'));
    const r = await enjin.cli(['deploy', other]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /hostname_taken/);
    assert.match(r.stderr, /enjin\.yaml:10:\d+: py\.localhost is served by project pyapp/);
    const projects = (await enjin.cli(['--json', 'projects'])).json.projects.map((p: { name: string }) => p.name);
    assert.ok(!projects.includes('thief'), 'the refused deploy created nothing');
  });
});

describe('enjin killed in the middle of a deploy', () => {
  test('the interrupted tree is failed with a reason, the previous version stays, the prepare is reaped', async () => {
    const dataDir = tempDir('interrupt');
    const app = fixture('python-app');
    let enjin = await EnjinProcess.start(dataDir);
    try {
      assert.equal((await enjin.cli(['deploy', app])).code, 0);
      writeFileSync(join(app, 'enjin.yaml'), readFileSync(join(app, 'enjin.yaml'), 'utf8').replace(`python3 -c "open('build.txt','w').write('built')"`, 'sleep 3618'));
      const started = await enjin.cli(['--json', 'deploy', app, '--detach']);
      const jobId = started.json.job.id;
      await eventually(() => processesRunning('sleep 3618').length > 0, 'the prepare command runs');
      await enjin.stop('SIGKILL');
      enjin = await EnjinProcess.start(dataDir);
      const job = (await enjin.cli(['--json', 'jobs', 'show', jobId])).json.job;
      assert.equal(job.state, 'failed');
      assert.match(job.error, /interrupted/);
      assert.doesNotMatch(JSON.stringify(job), /"state":"(running|waiting)"/);
      await eventually(() => processesRunning('sleep 3618').length === 0, 'the orphaned prepare command is killed');
      const versions = (await enjin.cli(['--json', 'versions', '--project', 'pyapp'])).json.versions;
      assert.deepEqual(versions.filter((v: { current: boolean }) => v.current).map((v: { number: number }) => v.number), [1]);
      await eventually(async () => (await viaRouter(enjin.routerPort, 'py.localhost')).body === 'python built on web\n', 'v1 serves');
    } finally {
      await enjin.stop('SIGINT');
      cleanup(dataDir, app);
    }
  });
});

describe('Ctrl-C and logs -f', () => {
  test('logs -f follows new lines; Ctrl-C stops enjin and every app process with it', async () => {
    const dataDir = tempDir('ctrlc');
    const app = fixture('procfile-app');
    const enjin = await EnjinProcess.start(dataDir);
    try {
      assert.equal((await enjin.cli(['deploy', app, '--project', 'ticks'])).code, 0);
      const follower = spawn(process.execPath, [BIN, '--data', dataDir, 'logs', 'ticks/clock', '-f', '-n', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      follower.stdout.on('data', (d) => (out += d));
      await eventually(() => out.split('\n').filter((l) => l.includes('tick')).length >= 3, 'three followed lines (one a second)');
      follower.kill('SIGINT');
      const pids = (await enjin.cli(['--json', 'ps'])).json.instances.map((i: { pid: number }) => i.pid);
      assert.equal(pids.length, 2);
      const exit = await enjin.stop('SIGINT');
      assert.equal(exit.code, 0);
      for (const pid of pids) assert.equal(alive(pid), false, `app process ${pid} is gone`);
    } finally {
      await enjin.stop('SIGKILL');
      cleanup(dataDir, app);
    }
  });
});

describe('enjin up on a PostgreSQL server', () => {
  test('deploys and keeps its state across a restart', async () => {
    const pg = await startPostgres();
    const dataDir = tempDir('pg');
    const app = fixture('procfile-app');
    let enjin = await EnjinProcess.start(dataDir, ['--database-url', pg.url]);
    try {
      const r = await enjin.cli(['deploy', app, '--project', 'onpg']);
      assert.equal(r.code, 0, r.stderr);
      await enjin.stop('SIGINT');
      enjin = await EnjinProcess.start(dataDir, ['--database-url', pg.url]);
      const versions = (await enjin.cli(['--json', 'versions', '--project', 'onpg'])).json.versions;
      assert.equal(versions.length, 1);
      await eventually(async () => (await viaRouter(enjin.routerPort, 'web.onpg.localhost', '/index.html')).status === 200, 'the app serves again');
    } finally {
      await enjin.stop('SIGINT');
      await pg.stop();
      cleanup(dataDir, app);
    }
  });
});
