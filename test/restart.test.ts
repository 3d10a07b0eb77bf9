// End to end with `enjin up`: `enjin restart` replaces a service's instances one at a time, each by a ready copy
// before it stops, under steady load through the router: every request answered, new processes, other services
// untouched. And `destroy` on a terminal asks for the project name again.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN, cleanup, EnjinProcess, eventually, fixture, ROOT, tempDir, underLoad } from './support/enjin.ts';

interface Ps { id: string; service: string; state: string; desired: string; pid: number | null }

const dataDir = tempDir('restart');
let enjin: EnjinProcess;

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
  const deployed = await enjin.cli(['deploy', fixture('node-app')], { timeoutMs: 300_000 });
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'hello']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir);
});

async function running(): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', 'hello']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances.filter((i) => i.desired === 'running');
}

test('restart web under load: one at a time, every request answered, new processes, the worker untouched', { timeout: 600_000 }, async () => {
  const before = await eventually(async () => {
    const list = await running();
    return list.length === 3 && list.every((i) => i.state === 'running' && i.pid) ? list : undefined;
  }, 'web ×2 and the worker running', 120_000);
  const webBefore = before.filter((i) => i.service === 'web');
  const worker = before.find((i) => i.service === 'worker')!;

  const { result: restarted, requests, failures } = await underLoad(enjin.routerPort, 'hello.localhost', () => enjin.cli(['--json', 'restart', 'web'], { timeoutMs: 300_000 }));
  assert.equal(restarted.code, 0, restarted.stderr + restarted.stdout);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  assert.ok(requests > 20, `load ran during the restart (${requests} requests)`);

  // One at a time: each replacement's start waits on the previous instance's stop (children run first).
  const tree = restarted.json.job as { title: string; children: Array<{ kind: string; children: Array<{ kind: string; children: Array<{ kind: string }> }> }> };
  assert.match(tree.title, /restart hello web \(2 instances, one at a time\)/);
  assert.equal(tree.children.length, 1);
  assert.equal(tree.children[0].kind, 'stop');
  assert.equal(tree.children[0].children[0].kind, 'start');
  assert.ok(tree.children[0].children[0].children.some((j) => j.kind === 'stop'), 'the second start depends on the first stop');

  const after = await eventually(async () => {
    const list = await running();
    return list.length === 3 && list.every((i) => i.state === 'running') ? list : undefined;
  }, 'three instances running after the restart', 60_000);
  const webAfter = after.filter((i) => i.service === 'web');
  assert.equal(webAfter.length, 2);
  for (const i of webAfter) assert.ok(!webBefore.some((b) => b.id === i.id || b.pid === i.pid), `${i.id} is a new process`);
  const workerAfter = after.find((i) => i.service === 'worker')!;
  assert.equal(workerAfter.id, worker.id);
  assert.equal(workerAfter.pid, worker.pid);
});

test('restart of an unknown service is refused with a code and changes nothing', async () => {
  const before = await running();
  const r = await enjin.cli(['--json', 'restart', 'nope']);
  assert.notEqual(r.code, 0);
  assert.equal(JSON.parse(r.stderr).error.code, 'unknown_service');
  assert.deepEqual((await running()).map((i) => i.id).sort(), before.map((i) => i.id).sort());
});

/** Runs `enjin ARGS` on a pseudo-terminal (util-linux `script`), typing `typed`; resolves with its exit code and output. */
function onTerminal(args: string[], typed: string): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, BIN, '--data', dataDir, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
    // Answer once asked, as a person would.
    if (/Type the project name/.test(output) && typed) {
      child.stdin.write(`${typed}\r`);
      typed = '';
    }
  });
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

test('destroy on a terminal asks for the project name: a wrong one changes nothing, the right one destroys', { timeout: 300_000 }, async () => {
  const refused = await onTerminal(['destroy', 'hello'], 'hell');
  assert.notEqual(refused.code, 0, refused.output);
  assert.match(refused.output, /not_confirmed|nothing was destroyed/);
  assert.equal((await enjin.cli(['--json', 'projects'])).json.projects.some((p: { name: string }) => p.name === 'hello'), true);
  const done = await onTerminal(['destroy', 'hello'], 'hello');
  assert.equal(done.code, 0, done.output);
  assert.match(done.output, /hello destroyed/);
  assert.equal((await enjin.cli(['--json', 'projects'])).json.projects.some((p: { name: string }) => p.name === 'hello'), false);
});
