// End to end with `enjin up`: connection draining. Under steady load, and with slow (2 s) requests always in flight,
// a scale-down and a redeploy fail no request: a stopping instance leaves the routes first, and is told to stop
// (SIGTERM) only once the router has no request in flight to it. The app exits at once on SIGTERM, cutting anything
// still open, so a slow request that completes from a stopped instance proves the drain waited for it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, tempDir, underLoad, viaRouter } from './support/enjin.ts';

interface Ps { id: string; service: string; state: string; desired: string; pid: number | null; version: number | null }
interface Tree { kind: string; title: string; log?: string[]; children?: Tree[] }

const HOST = 'drainapp.localhost';
const SLOW_MS = 2000;
const dataDir = tempDir('drain');
const appDir = tempDir('drain-app');
let enjin: EnjinProcess;

function writeApp(release: string): void {
  writeFileSync(join(appDir, 'enjin.yaml'), [
    'project: drainapp',
    'services:',
    '  web:',
    '    command: node server.js',
    '    instances: 2',
    `    hostnames: [${HOST}]`,
    '    health: { http: /healthz }',
    '',
  ].join('\n'));
  writeFileSync(join(appDir, 'server.js'), `// release ${release}
const http = require('node:http');
const server = http.createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  if (req.url === '/slow') return setTimeout(() => res.end('slow from ' + process.pid), ${SLOW_MS});
  res.end('${release} from ' + process.pid);
});
server.listen(Number(process.env.PORT), '127.0.0.1');
// No graceful close: whatever is still in flight when the stop comes is cut. Draining must make that nothing.
process.on('SIGTERM', () => process.exit(0));
`);
}

before(async () => {
  writeApp('one');
  enjin = await EnjinProcess.start(dataDir);
  const deployed = await enjin.cli(['deploy', appDir], { timeoutMs: 300_000 });
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'drainapp', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, appDir);
});

async function webInstances(): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', 'drainapp']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances.filter((i) => i.service === 'web' && i.desired === 'running');
}

const flatten = (t: Tree): Tree[] => [t, ...(t.children ?? []).flatMap(flatten)];

/**
 * Runs `work` under the steady load of underLoad plus four clients sending slow POSTs back to back, so slow requests
 * are in flight on every instance at any moment. Returns the slow requests' answers and failures too.
 */
async function withSlowLoad<T>(work: (slowAnswers: readonly string[]) => Promise<T>) {
  let going = true;
  const slowAnswers: string[] = [];
  const slowFailures: string[] = [];
  const slowClient = async () => {
    while (going) {
      // POST: the router never retries it elsewhere, so a request cut by a stop would show here as a failure.
      await viaRouter(enjin.routerPort, HOST, '/slow', { method: 'POST', timeoutMs: 60_000 })
        .then((r) => (r.status === 200 ? slowAnswers.push(r.body) : slowFailures.push(`${r.status} ${r.body.slice(0, 120)}`)))
        .catch((err: Error) => slowFailures.push(err.message));
    }
  };
  const clients = [0, 1, 2, 3].map(() => slowClient());
  try {
    const loaded = await underLoad(enjin.routerPort, HOST, () => work(slowAnswers));
    return { ...loaded, slowAnswers, slowFailures };
  } finally {
    going = false;
    await Promise.all(clients);
  }
}

/** The stop job's log must show the drain waited for requests in flight, else this test proved nothing. */
function assertDrainWaited(tree: Tree): void {
  const stops = flatten(tree).filter((j) => j.kind === 'stop');
  assert.ok(stops.length > 0, 'the tree stops instances');
  const lines = stops.flatMap((j) => j.log ?? []);
  assert.ok(lines.some((l) => /waiting for \d+ request\(s\) in flight to finish/.test(l)), `the drain saw requests in flight:\n${lines.join('\n')}`);
}

test('a scale-down fails no request; slow requests on the stopped instance complete', async () => {
  const before = await eventually(async () => {
    const list = await webInstances();
    return list.length === 2 && list.every((i) => i.state === 'running') ? list : undefined;
  }, 'two web instances running');
  const { result: scaled, requests, failures, slowAnswers, slowFailures } = await withSlowLoad(async (answered) => {
    // Let slow requests reach both instances first.
    await eventually(() => new Set(answered).size >= 2, 'slow requests answered by both instances');
    return enjin.cli(['--json', 'scale', 'web=1', '--project', 'drainapp'], { timeoutMs: 300_000 });
  });
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  assert.deepEqual(slowFailures, [], `${slowFailures.length} of ${slowAnswers.length + slowFailures.length} slow requests failed`);
  assertDrainWaited((scaled.json as { job: Tree }).job);

  const left = await webInstances();
  assert.equal(left.length, 1);
  const stopped = before.find((i) => i.id !== left[0].id)!;
  assert.ok(slowAnswers.includes(`slow from ${stopped.pid}`), 'the stopped instance answered slow requests');
});

test('a redeploy fails no request; slow requests on the old version complete', async () => {
  const old = await webInstances();
  writeApp('two');
  const { result: deployed, requests, failures, slowAnswers, slowFailures } = await withSlowLoad(() => enjin.cli(['--json', 'deploy', appDir], { timeoutMs: 300_000 }));
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  assert.deepEqual(slowFailures, [], `${slowFailures.length} of ${slowAnswers.length + slowFailures.length} slow requests failed`);
  assert.ok(requests > 20, `load ran during the deploy (${requests} requests)`);
  assertDrainWaited((deployed.json as { job: Tree }).job);
  assert.ok(old.some((i) => slowAnswers.includes(`slow from ${i.pid}`)), 'old instances answered slow requests');
  const answer = await viaRouter(enjin.routerPort, HOST);
  assert.match(answer.body, /^two from /);
});
