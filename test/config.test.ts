// End to end with `enjin up`: config vars. `config set` makes a new release of the same build (nothing prepared
// again) that reaches the app while every request through the router is answered; values are sealed at rest (no file
// under the data directory holds one in plain text) and hidden unless asked for; `releases` tells what each release
// was (the deploy's git commit, the config change, the rollback) and `rollback` brings back a release's build and config.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, fixture, tempDir, underLoad, viaRouter } from './support/enjin.ts';

interface Release { number: number; kind: string; description: string; build: number | null; by: string | null; git: { commit: string; message: string } | null; current: boolean; configKeys: { project: string[] } }
interface Ps { id: string; service: string; state: string; desired: string; pid: number | null; version: number | null }

const dataDir = tempDir('config');
const appDir = tempDir('config-app');
const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
let enjin: EnjinProcess;
let commit = '';

before(async () => {
  cpSync(fixture('node-app'), appDir, { recursive: true });
  const git = (...args: string[]) => execFileSync('git', ['-C', appDir, ...args], { encoding: 'utf8' }).trim();
  git('init', '-q');
  git('-c', 'user.name=Test', '-c', 'user.email=test@example.com', 'commit', '-q', '--allow-empty', '-m', 'placeholder');
  git('add', '-A');
  git('-c', 'user.name=Test', '-c', 'user.email=test@example.com', 'commit', '-q', '-m', 'Greet in the language of config');
  commit = git('rev-parse', 'HEAD');
  enjin = await EnjinProcess.start(dataDir);
  const deployed = await enjin.cli(['deploy', appDir], { timeoutMs: 300_000 });
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'hello', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, appDir);
});

async function releases(): Promise<Release[]> {
  const r = await enjin.cli(['--json', 'releases', '--project', 'hello']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { releases: Release[] }).releases;
}

async function webInstances(): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', 'hello']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances.filter((i) => i.desired === 'running' && i.service === 'web');
}

/** Every file under `dir` whose bytes contain `needle`. */
function filesHolding(dir: string, needle: string): string[] {
  const found: string[] = [];
  const bytes = Buffer.from(needle);
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      let s;
      try {
        s = statSync(p);
      } catch {
        continue; // went away while we looked (a rotated log, a temp file)
      }
      if (s.isDirectory()) walk(p);
      else if (s.isFile() && readFileSync(p).includes(bytes)) found.push(p);
    }
  };
  walk(dir);
  return found;
}

test('a deploy from a git checkout is a release that names its commit and who made it', async () => {
  const [v1] = await releases();
  assert.equal(v1.number, 1);
  assert.equal(v1.kind, 'deploy');
  assert.equal(v1.git?.commit, commit);
  assert.equal(v1.description, `deploy ${commit.slice(0, 7)} Greet in the language of config`);
  assert.equal(v1.build, 1);
  assert.ok(v1.by, 'the token that deployed it is named');
});

test('config set: a new release of the same build, rolled out under load with every request answered', { timeout: 600_000 }, async () => {
  const before = await eventually(async () => {
    const list = await webInstances();
    return list.length === 2 && list.every((i) => i.state === 'running') ? list : undefined;
  }, 'web ×2 running', 120_000);

  const { result: set, requests, failures } = await underLoad(enjin.routerPort, 'hello.localhost', () =>
    enjin.cli(['--json', 'config', 'set', 'GREETING=hola', `SECRET_TOKEN=${SECRET}`, '--project', 'hello'], { timeoutMs: 300_000 }));
  assert.equal(set.code, 0, set.stderr + set.stdout);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  assert.ok(requests > 10, `load ran during the release (${requests} requests)`);
  assert.equal(set.json.release.number, 2);
  assert.equal(set.json.release.build, 1, 'v2 runs the build of v1');
  assert.equal(set.json.job.state, 'succeeded');

  // Nothing was built: every prepare job found the build prepared already, and no prepare command ran.
  const text = JSON.stringify(set.json.job);
  assert.ok(!text.includes('$ node prepare.js'), 'the prepare command did not run again');
  assert.match(text, /already prepared/);
  assert.ok(!set.stdout.includes(SECRET) && !set.stderr.includes(SECRET), 'the value is not printed');
  assert.deepEqual(set.json.config.project, { GREETING: '<redacted>', SECRET_TOKEN: '<redacted>' });

  // The app has it: new processes answer with the new greeting, and the secret is in their environment.
  const r = await viaRouter(enjin.routerPort, 'hello.localhost', '/');
  assert.match(r.body, /^hola from web v2 /);
  const after = await webInstances();
  assert.equal(after.length, 2);
  for (const i of after) {
    assert.ok(!before.some((b) => b.id === i.id), `${i.id} is a new instance`);
    assert.ok(readFileSync(`/proc/${i.pid}/environ`).includes(Buffer.from(`SECRET_TOKEN=${SECRET}\0`)), `instance ${i.id} has the secret`);
  }
});

test('values are hidden unless asked for, and not on disk in plain text', async () => {
  const listed = await enjin.cli(['--json', 'config', '--project', 'hello']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(listed.json.config.project, { GREETING: '<redacted>', SECRET_TOKEN: '<redacted>' });
  assert.ok(!listed.stdout.includes(SECRET));

  const got = await enjin.cli(['config', 'get', 'SECRET_TOKEN', '--project', 'hello']);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout.trim(), SECRET);
  const revealed = await enjin.cli(['--json', 'config', '--reveal', '--project', 'hello']);
  assert.equal(revealed.json.config.project.SECRET_TOKEN, SECRET);

  const jobs = await enjin.cli(['--json', 'jobs', '--project', 'hello', '--limit', '50']);
  for (const j of (jobs.json as { jobs: Array<{ id: string }> }).jobs) {
    const shown = await enjin.cli(['--json', 'jobs', 'show', j.id]);
    assert.ok(!shown.stdout.includes(SECRET), `job ${j.id} and its log do not hold the value`);
  }

  // The store (PGlite's files), the agent's desired state and everything else under the data directory.
  assert.deepEqual(filesHolding(dataDir, SECRET), [], 'no file under the data directory holds the value in plain text');
});

test('a service\'s own var reaches only that service; get, unset and the listing take --service', { timeout: 600_000 }, async () => {
  const set = await enjin.cli(['--json', 'config', 'set', 'ONLY_WORKER=yes', '--service', 'worker', '--project', 'hello'], { timeoutMs: 300_000 });
  assert.equal(set.code, 0, set.stderr + set.stdout);
  assert.equal(set.json.release.description, 'set ONLY_WORKER (worker)');
  const listed = await enjin.cli(['--json', 'config', '--reveal', '--project', 'hello']);
  assert.deepEqual(listed.json.config.services, { worker: { ONLY_WORKER: 'yes' } });
  assert.equal(listed.json.config.project.ONLY_WORKER, undefined, 'not set project-wide');
  const got = await enjin.cli(['config', 'get', 'ONLY_WORKER', '--service', 'worker', '--project', 'hello']);
  assert.equal(got.stdout.trim(), 'yes');
  const notProjectWide = await enjin.cli(['config', 'get', 'ONLY_WORKER', '--project', 'hello']);
  assert.notEqual(notProjectWide.code, 0);
  const ps = await enjin.cli(['--json', 'ps', 'hello']);
  for (const i of (ps.json as { instances: Ps[] }).instances.filter((x) => x.desired === 'running' && x.state === 'running')) {
    const has = readFileSync(`/proc/${i.pid}/environ`).includes(Buffer.from('ONLY_WORKER=yes\0'));
    assert.equal(has, i.service === 'worker', `${i.service} ${i.id}`);
  }
  const unset = await enjin.cli(['--json', 'config', 'unset', 'ONLY_WORKER', '--service', 'worker', '--project', 'hello'], { timeoutMs: 300_000 });
  assert.equal(unset.code, 0, unset.stderr + unset.stdout);
  assert.equal(unset.json.release.description, 'unset ONLY_WORKER (worker)');
});

test('bad config changes are refused whole and change nothing', async () => {
  const count = (await releases()).length;
  const reserved = await enjin.cli(['--json', 'config', 'set', 'PORT=80', '--project', 'hello']);
  assert.notEqual(reserved.code, 0);
  assert.match(reserved.stderr, /config_invalid|set by enjin/);
  const badName = await enjin.cli(['config', 'set', '1X=1', '--project', 'hello']);
  assert.notEqual(badName.code, 0);
  assert.match(badName.stderr, /not allowed/);
  const missing = await enjin.cli(['config', 'unset', 'NOT_THERE', '--project', 'hello']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /NOT_THERE is not set/);
  const notPair = await enjin.cli(['config', 'set', 'JUSTAKEY', '--project', 'hello']);
  assert.notEqual(notPair.code, 0);
  assert.match(notPair.stderr, /KEY=VALUE/);
  assert.equal((await releases()).length, count, 'no release was made');
});

test('releases tell the story; rollback brings back a release\'s build and config as a new release', { timeout: 600_000 }, async () => {
  const all = await releases();
  const v2 = all.find((r) => r.number === 2)!;
  const v1 = all.find((r) => r.number === 1)!;
  assert.equal(v2.kind, 'config');
  assert.equal(v2.description, 'set GREETING, SECRET_TOKEN');
  assert.deepEqual(v2.configKeys.project, ['GREETING', 'SECRET_TOKEN']);
  assert.equal(v1.current, false);

  const back = await enjin.cli(['--json', 'rollback', 'v1', '--project', 'hello'], { timeoutMs: 300_000 });
  assert.equal(back.code, 0, back.stderr + back.stdout);
  assert.equal(back.json.release.number, 5);
  assert.equal(back.json.release.description, 'rollback to v1');
  assert.equal(back.json.release.build, 1);
  const r = await eventually(async () => {
    const res = await viaRouter(enjin.routerPort, 'hello.localhost', '/');
    return res.body.startsWith('hi from web v5 ') ? res : undefined;
  }, 'v5 answers with the manifest greeting again', 60_000);
  assert.match(r.body, /^hi from web v5 /);
  const config = await enjin.cli(['--json', 'config', '--project', 'hello']);
  assert.deepEqual(config.json.config.project, {}, 'v1 had no config vars, so v5 has none');

  // A scale makes no release, but is part of the story.
  const scaled = await enjin.cli(['scale', 'web=1', '--project', 'hello'], { timeoutMs: 300_000 });
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  const listed = await enjin.cli(['--json', 'releases', '--project', 'hello']);
  const scales = (listed.json as { scales: Array<{ description: string; by: string | null }> }).scales;
  assert.deepEqual(scales.map((x) => x.description), ['scale web=1']);
  assert.ok(scales[0].by, 'who scaled is named');

  const table = await enjin.cli(['releases', '--project', 'hello']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.split('\n')[1], /^-\s+scale web=1/, 'the scale is the newest line');
  assert.match(table.stdout, /v5\s+rollback to v1\s+v1/);
  assert.match(table.stdout, /v2\s+set GREETING, SECRET_TOKEN\s+v1/);
});
