// End to end: an app whose web process floods its log keeps answering through the router, its log stays within its
// cap, and Ctrl-C still ends `enjin up` quickly with no app process left.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnjinProcess, cleanup, eventually, tempDir, viaRouter } from './support/enjin.ts';

const MARKER = 'enjin-e2e-flood-marker';
const LOG_CAP = 10 * 1024 * 1024; // the agent's default total per instance

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

const dirs: string[] = [];
let enjin: EnjinProcess | undefined;
after(async () => {
  await enjin?.stop('SIGKILL');
  for (const pid of processesRunning(MARKER)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  cleanup(...dirs);
});

test('an app flooding its log keeps answering, its log stays capped, and Ctrl-C ends enjin with no process left', async () => {
  const dataDir = tempDir('flood');
  const app = tempDir('flood-app');
  dirs.push(dataDir, app);
  writeFileSync(join(app, 'enjin.yaml'), 'project: floody\nservices:\n  web:\n    command: node server.js\n    health: { http: /healthz }\n');
  // The server answers while two children of its own flood the shared stdout: `yes` for good, and a 200 MB burst.
  writeFileSync(join(app, 'server.js'), `
const http = require('node:http');
const { spawn } = require('node:child_process');
spawn('sh', ['-c', 'exec yes ${MARKER}'], { stdio: ['ignore', 'inherit', 'inherit'] });
spawn('sh', ['-c', 'head -c 209715200 /dev/zero | tr "\\\\0" "z" | fold -w 100 # ${MARKER}'], { stdio: ['ignore', 'inherit', 'inherit'] });
http.createServer((req, res) => res.end(req.url === '/healthz' ? 'ok' : 'still here\\n')).listen(Number(process.env.PORT), '127.0.0.1');
`);
  enjin = await EnjinProcess.start(dataDir);
  const r = await enjin.cli(['deploy', app]);
  assert.equal(r.code, 0, r.stderr);
  const logsDir = join(dataDir, 'agent', 'logs');
  const deadline = Date.now() + 8000;
  let answered = 0;
  while (Date.now() < deadline) {
    const res = await viaRouter(enjin.routerPort, 'web.floody.localhost', '/', { timeoutMs: 10_000 });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'still here\n');
    answered++;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok(answered > 5);
  // Each instance's log (live + rotated) stays within the cap while the flood goes on.
  const sizes = new Map<string, number>();
  for (const name of readdirSync(logsDir)) {
    if (!/\.log(\.1)?$/.test(name)) continue;
    const id = name.replace(/\.log(\.1)?$/, '');
    sizes.set(id, (sizes.get(id) ?? 0) + statSync(join(logsDir, name)).size);
  }
  assert.ok(sizes.size > 0);
  for (const [id, size] of sizes) assert.ok(size <= LOG_CAP, `the log of ${id} holds ${size} bytes`);
  const logs = await enjin.cli(['logs', 'floody/web'], { timeoutMs: 60_000 });
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, new RegExp(`(${MARKER}|z{100})\n`), 'the logs command reads the flood');
  const t0 = Date.now();
  const exit = await enjin.stop('SIGINT');
  assert.ok(Date.now() - t0 < 60_000, 'Ctrl-C ended enjin');
  assert.equal(exit.signal, null, `enjin exited by itself (code ${exit.code})`);
  await eventually(() => processesRunning(MARKER).length === 0, 'no flooding process is left', 10_000);
});
