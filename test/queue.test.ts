// End to end with `enjin up` and real processes: changes to a busy project wait in its queue instead of being refused.
// A scale asked for during a deploy is queued with its position and runs after it; a queued deploy says so and can
// be aborted (it never runs); `enjin stop` keeps a project stopped until `enjin start` brings its scale back.
// (Freeze and the forced stop and destroy with a node away are in queue-nodes.test.ts, with simulated nodes.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, tempDir, viaRouter } from './support/enjin.ts';

interface Ps { id: string; service: string; state: string; desired: string; version: number | null }
interface ListedJob { id: string; kind: string; state: string; title: string; queue?: { position: number; behind: string | null } }

const dataDir = tempDir('queue');
const appsDir = tempDir('queue-apps');
let enjin: EnjinProcess;

/** An app whose web takes a few seconds to answer, so a deploy of it is still running when the next request comes. */
function app(n: number): string {
  const dir = join(appsDir, `v${n}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'enjin.yaml'), `project: q\nenv:\n  N: "${n}"\nservices:\n  web:\n    command: sleep 4 && node server.js\n    health: { start_timeout: 120 }\n`);
  writeFileSync(join(dir, 'server.js'), "require('http').createServer((q, s) => s.end('queue ' + process.env.N)).listen(process.env.PORT)\n");
  return dir;
}

async function jobs(state?: string): Promise<ListedJob[]> {
  const r = await enjin.cli(['--json', 'jobs', '--project', 'q', ...(state ? ['--state', state] : [])]);
  assert.equal(r.code, 0, r.stderr);
  return r.json.jobs as ListedJob[];
}

async function runningWeb(): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', 'q']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json.instances as Ps[]).filter((i) => i.service === 'web' && i.desired === 'running' && i.state === 'running');
}

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
  const first = await enjin.cli(['deploy', app(1)], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, first.stderr + first.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'q', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, appsDir);
});

test('a scale asked for during a deploy is queued with its position, then runs on the new version', { timeout: 600_000 }, async () => {
  const deploy = await enjin.cli(['--json', 'deploy', app(2), '--detach'], { timeoutMs: 300_000 });
  assert.equal(deploy.code, 0, deploy.stderr);
  const deployId = deploy.json.job.id as string;
  assert.notEqual(deploy.json.job.state, 'queued', 'nothing else runs: the deploy starts at once');

  const scaling = enjin.cli(['--json', 'scale', 'web=2', '--project', 'q'], { timeoutMs: 300_000 });
  const queued = await eventually(async () => (await jobs('queued')).find((j) => j.kind === 'scale'), 'the scale to be listed as queued', 60_000);
  assert.deepEqual(queued.queue, { position: 1, behind: deployId });
  const text = await enjin.cli(['jobs', '--project', 'q']);
  assert.match(text.stdout, new RegExp(`${queued.id}\\s+queued behind ${deployId} \\(position 1\\)`));

  const scaled = await scaling;
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  assert.equal(scaled.json.job.id, queued.id, 'the queued tree is the one that ran');
  assert.equal(scaled.json.job.state, 'succeeded');
  const deployed = (await enjin.cli(['--json', 'jobs', 'show', deployId])).json.job;
  assert.equal(deployed.state, 'succeeded', 'the deploy ran to its end first');
  assert.ok(Date.parse(scaled.json.job.startedAt) >= Date.parse(deployed.finishedAt), 'the scale started once the deploy had ended');
  const web = await runningWeb();
  assert.equal(web.length, 2);
  assert.ok(web.every((i) => i.version === 2), 'planned when it started: both instances run the deployed version');
});

test('a deploy behind a running one says it is queued, and an abort takes it out of the queue: it never runs', { timeout: 600_000 }, async () => {
  const running = await enjin.cli(['--json', 'deploy', app(3), '--detach'], { timeoutMs: 300_000 });
  assert.equal(running.code, 0, running.stderr);
  const runningId = running.json.job.id as string;
  const waiting = await enjin.cli(['deploy', app(4), '--detach'], { timeoutMs: 300_000 });
  assert.equal(waiting.code, 0, waiting.stderr);
  assert.match(waiting.stderr, new RegExp(`queued behind ${runningId} \\(position 1\\)`));
  const [queued] = await jobs('queued');
  assert.equal(queued.kind, 'deploy');

  const aborted = await enjin.cli(['--json', 'jobs', 'abort', queued.id]);
  assert.equal(aborted.code, 0, aborted.stderr);
  assert.equal(aborted.json.job.state, 'aborted');
  assert.deepEqual(await jobs('queued'), []);
  const again = await enjin.cli(['--json', 'jobs', 'abort', queued.id]);
  assert.notEqual(again.code, 0);
  assert.equal(JSON.parse(again.stderr).error.code, 'job_finished');

  const first = await enjin.cli(['--json', 'jobs', 'show', runningId, '-f'], { timeoutMs: 300_000 });
  assert.equal(first.json.job.state, 'succeeded');
  const tree = (await enjin.cli(['--json', 'jobs', 'show', queued.id])).json.job;
  assert.equal(tree.state, 'aborted');
  assert.deepEqual(tree.children, [], 'nothing of it was planned or run');
  const project = (await enjin.cli(['--json', 'projects'])).json.projects.find((p: { name: string }) => p.name === 'q');
  assert.equal(project.version, 3, 'the running deploy went through; the aborted one changed nothing');
  await eventually(async () => (await viaRouter(enjin.routerPort, 'web.q.localhost')).body === 'queue 3', 'v3 to answer', 60_000);
});

test('stop keeps the project stopped (the reconciler leaves it), start brings its scale back', { timeout: 600_000 }, async () => {
  await eventually(async () => (await runningWeb()).length === 2, 'two web instances', 120_000);
  const stopped = await enjin.cli(['--json', 'stop', 'q'], { timeoutMs: 300_000 });
  assert.equal(stopped.code, 0, stopped.stderr + stopped.stdout);
  assert.equal(stopped.json.job.state, 'succeeded');
  const web = stopped.json.project.services.find((s: { name: string }) => s.name === 'web');
  assert.deepEqual([web.desired, web.running, web.stopped], [0, 0, true]);
  assert.deepEqual(await runningWeb(), []);
  const listed = await enjin.cli(['projects']);
  assert.match(listed.stdout, /web 0\/0 stopped/);

  // Refused while nothing is stopped? No: it is stopped, so a second stop has nothing to do and keeps the scale.
  const twice = await enjin.cli(['--json', 'stop', 'q']);
  assert.equal(twice.code, 0, twice.stderr);
  assert.equal(twice.json.job, null);

  const started = await enjin.cli(['--json', 'start', 'q'], { timeoutMs: 300_000 });
  assert.equal(started.code, 0, started.stderr + started.stdout);
  assert.equal(started.json.job.state, 'succeeded');
  assert.equal((await runningWeb()).length, 2, 'the scale from before the stop');
  await eventually(async () => (await viaRouter(enjin.routerPort, 'web.q.localhost')).body === 'queue 3', 'the app to answer again', 60_000);

  const unknown = await enjin.cli(['--json', 'stop', 'q', '--service', 'nope']);
  assert.notEqual(unknown.code, 0);
  assert.equal(JSON.parse(unknown.stderr).error.code, 'unknown_service');
});
