// End to end with `enjin up`: health checks and restart policies as a user writes them in enjin.yaml. An app that stops
// answering its health path is restarted (liveness); a failing readiness shows as unhealthy in `ps --json`, with the
// probe's output; an on-failure task that exits 0 finishes and stays finished; a crash loop is marked failed, replaced,
// and told in `enjin events`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, tempDir } from './support/enjin.ts';

interface Ps {
  id: string; project: string; service: string; state: string; desired: string; pid: number | null; host: string | null; port: number | null;
  restarts: number; message: string | null; health: 'healthy' | 'unhealthy' | 'starting' | 'none';
  probe: { ok: boolean; at: string; durationMs: number; output: string; failures: number } | null;
}
interface Event { kind: string; message: string; at: string; project?: string; service?: string; instanceId?: string }

// Healthy until asked GET /sick, then /healthz answers 503 for the rest of its life.
const APP_JS = `
const http = require('node:http');
let sick = false;
http.createServer((req, res) => {
  if (req.url === '/sick') { sick = true; return res.end('sick from now on\\n'); }
  if (req.url === '/healthz') { res.statusCode = sick ? 503 : 200; return res.end(sick ? 'sick' : 'ok'); }
  res.end('hello from ' + process.pid + '\\n');
}).listen(Number(process.env.PORT));
process.on('SIGTERM', () => process.exit(0));
`;

const dataDir = tempDir('health');
const apps: string[] = [];
let enjin: EnjinProcess;

function app(files: Record<string, string>): string {
  const dir = tempDir('health-app');
  apps.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

async function deploy(dir: string): Promise<void> {
  const r = await enjin.cli(['deploy', dir], { timeoutMs: 300_000 });
  assert.equal(r.code, 0, r.stderr + r.stdout);
}

async function ps(project: string): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', project]);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances;
}

async function events(project: string): Promise<Event[]> {
  const r = await enjin.cli(['--json', 'events', '--project', project]);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { events: Event[] }).events;
}

function get(host: string, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}


before(async () => {
  enjin = await EnjinProcess.start(dataDir);
});

after(async () => {
  for (const p of ['vitals', 'chores', 'loopy']) await enjin?.cli(['destroy', p, '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, ...apps);
});

test('liveness restarts an app that stops answering its health path; readiness failing shows unhealthy in ps', { timeout: 600_000 }, async () => {
  await deploy(app({
    'app.js': APP_JS,
    'enjin.yaml': `project: vitals
services:
  web:
    command: node app.js
    hostnames: [vitals.localhost]
    health: { http: /healthz, interval: 1s, timeout: 1s, retries: 2, grace: 0s }
    restart: { policy: always, max_attempts: 10, window: 5m, backoff: { initial: 500ms, max: 2s } }
  api:
    command: node app.js
    hostnames: [api.vitals.localhost]
    health: { http: /healthz, interval: 1s, timeout: 1s, retries: 100, grace: 0s }
`,
  }));

  // Readiness: once /healthz fails, ps says unhealthy with what the probe saw, while the process keeps running.
  const api = await eventually(async () => (await ps('vitals')).find((i) => i.service === 'api' && i.state === 'running' && i.health === 'healthy'), 'api healthy', 120_000);
  assert.equal(api.probe?.ok, true);
  assert.equal(await get(api.host!, api.port!, '/sick'), 200);
  const ill = await eventually(async () => (await ps('vitals')).find((i) => i.id === api.id && i.health === 'unhealthy'), 'api unhealthy in ps --json', 60_000);
  assert.equal(ill.state, 'running');
  assert.equal(ill.pid, api.pid, 'readiness alone does not restart it');
  assert.equal(ill.probe?.ok, false);
  assert.match(ill.probe!.output, /HTTP 503 from \/healthz/);
  const table = (await enjin.cli(['ps', 'vitals'])).stdout;
  assert.match(table, /HEALTH/);
  assert.match(table.split('\n').find((l) => l.includes(api.id)) ?? '', /unhealthy: HTTP 503 from \/healthz/);

  // Liveness: `retries` failures in a row restart it, with an event naming service and instance and the probe output.
  const web = await eventually(async () => (await ps('vitals')).find((i) => i.service === 'web' && i.state === 'running' && i.health === 'healthy'), 'web healthy', 120_000);
  assert.equal(await get(web.host!, web.port!, '/sick'), 200);
  const back = await eventually(async () => (await ps('vitals')).find((i) => i.id === web.id && i.state === 'running' && i.pid !== web.pid && i.health === 'healthy'), 'web restarted and healthy again', 120_000);
  assert.ok(back.restarts >= 1);
  const probeFailed = await eventually(async () => (await events('vitals')).find((e) => e.kind === 'probe-failed' && e.instanceId === web.id), 'a probe-failed event', 60_000);
  assert.equal(probeFailed.service, 'web');
  assert.match(probeFailed.message, /HTTP 503 from \/healthz/);
});

test('an on-failure task that exits 0 finishes: not restarted, not replaced', { timeout: 600_000 }, async () => {
  await deploy(app({
    'task.js': `setTimeout(() => { console.log('work done'); process.exit(0); }, 3000);\n`,
    'enjin.yaml': `project: chores
services:
  task:
    command: node task.js
    restart: { policy: on-failure }
`,
  }));
  const done = await eventually(async () => (await ps('chores')).find((i) => i.service === 'task' && i.state === 'finished'), 'the task finished', 120_000);
  assert.equal(done.restarts, 0);
  assert.equal(done.health, 'none');
  const exited = await eventually(async () => (await events('chores')).find((e) => e.kind === 'instance-exited' && e.instanceId === done.id), 'an instance-exited event', 60_000);
  assert.match(exited.message, /finished/);
  // The controller counts it as done: a few reconcile rounds later it is still the only one, still finished.
  for (let round = 0; round < 5; round++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = (await ps('chores')).filter((i) => i.service === 'task' && i.desired === 'running');
    assert.deepEqual(now.map((i) => [i.id, i.state, i.restarts]), [[done.id, 'finished', 0]]);
  }
});

test('a crash loop backs off, is marked failed with its last log lines, and is replaced', { timeout: 600_000 }, async () => {
  await deploy(app({
    'crash.js': `console.log('crashing soon, pid ' + process.pid);\nsetTimeout(() => { console.error('fatal: cannot reach the database'); process.exit(1); }, 2000);\n`,
    'enjin.yaml': `project: loopy
services:
  crasher:
    command: node crash.js
    restart: { policy: always, max_attempts: 2, window: 5m, backoff: { initial: 200ms, max: 1s } }
`,
  }));
  const first = (await ps('loopy')).find((i) => i.service === 'crasher')!;
  assert.ok(first, 'the crasher was placed');
  const failed = await eventually(async () => (await events('loopy')).find((e) => e.kind === 'instance-failed' && e.instanceId === first.id), 'an instance-failed event', 180_000);
  assert.equal(failed.service, 'crasher');
  assert.match(failed.message, /max_attempts 2/);
  assert.match(failed.message, /fatal: cannot reach the database/, 'the last log lines');
  // Replaced: a new instance of the service, while the failed one is gone or on its way out.
  const replacement = await eventually(async () => (await ps('loopy')).find((i) => i.service === 'crasher' && i.id !== first.id && i.desired === 'running'), 'a replacement instance', 180_000);
  assert.notEqual(replacement.id, first.id);
  const old = (await ps('loopy')).find((i) => i.id === first.id);
  assert.ok(!old || old.desired === 'stopped' || old.state === 'failed', `the failed instance is not kept running: ${JSON.stringify(old)}`);
});
