// End to end with `enjin up`: `enjin events` lists what happened beside state. An instance killed outright is an
// `instance-exited` event naming its project and service; `-f` prints new ones as they come; they are kept in the
// store, so a restarted enjin still lists them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN, cleanup, EnjinProcess, eventually, fixture, ROOT, tempDir } from './support/enjin.ts';

interface Ps { id: string; service: string; state: string; desired: string; pid: number | null }
interface Event { seq: number; kind: string; message: string; at: string; project?: string; service?: string; instanceId?: string }

const dataDir = tempDir('events');
let enjin: EnjinProcess;

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
  const deployed = await enjin.cli(['deploy', fixture('node-app')], { timeoutMs: 300_000 });
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'hello', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir);
});

async function runningWeb(): Promise<Ps> {
  return eventually(async () => {
    const r = await enjin.cli(['--json', 'ps', 'hello']);
    return (r.json as { instances: Ps[] }).instances.find((i) => i.service === 'web' && i.desired === 'running' && i.state === 'running' && i.pid);
  }, 'a web instance running', 120_000);
}

async function events(args: string[] = []): Promise<Event[]> {
  const r = await enjin.cli(['--json', 'events', '--project', 'hello', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { events: Event[] }).events;
}

test('an instance killed outright is an event naming its project, service and instance', { timeout: 300_000 }, async () => {
  const web = await runningWeb();
  process.kill(web.pid!, 'SIGKILL');
  const exited = await eventually(async () => (await events()).find((e) => e.kind === 'instance-exited' && e.instanceId === web.id), `an instance-exited event for ${web.id}`, 60_000);
  assert.equal(exited.project, 'hello');
  assert.equal(exited.service, 'web');
  assert.match(exited.message, /SIGKILL|signal/);
  assert.ok(Date.parse(exited.at) > 0);
  assert.deepEqual(await enjin.cli(['--json', 'events', '--project', 'hello', '--service', 'worker']).then((r) => (r.json as { events: Event[] }).events.filter((e) => e.instanceId === web.id)), [], 'the service filter holds');
  const table = await enjin.cli(['events', '--project', 'hello']);
  assert.match(table.stdout, new RegExp(`instance-exited\\s+hello/web\\s+.*${web.id}`));
  const unknown = await enjin.cli(['events', '--project', 'nosuch']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /nosuch/);
});

test('-f prints new events as they happen', { timeout: 300_000 }, async () => {
  const follower = spawn(process.execPath, [BIN, '--data', dataDir, '--json', 'events', '-f', '--project', 'hello', '-n', '1'], { cwd: ROOT, env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  follower.stdout.on('data', (d) => (out += d));
  try {
    await eventually(() => out.includes('\n'), 'the latest event printed first', 60_000);
    const web = await runningWeb();
    process.kill(web.pid!, 'SIGKILL');
    await eventually(() => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event).some((e) => e.instanceId === web.id && e.kind === 'instance-exited'), `the follower printed the exit of ${web.id}`, 60_000);
  } finally {
    follower.kill('SIGKILL');
  }
});

test('events are kept across a restart of enjin', { timeout: 300_000 }, async () => {
  const before = await events();
  assert.ok(before.length >= 2);
  await enjin.stop();
  enjin = await EnjinProcess.start(dataDir);
  const after = await events();
  for (const e of before) assert.ok(after.some((a) => a.seq === e.seq && a.message === e.message), `event ${e.seq} is still listed`);
});
