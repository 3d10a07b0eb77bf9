// End to end with `enjin up`, under steady load through the router: a canary at 1 of 4 instances takes about its
// share of requests while the deploy pauses, is promoted with `enjin deploy --promote` and rolled out one at a time;
// a version whose health check fails is rolled back (the deploy exits non-zero with the probe's output) while the
// old version keeps serving; no request fails in either.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, fixture, tempDir, underLoad, viaRouter } from './support/enjin.ts';

interface Ps { id: string; service: string; state: string; desired: string; version: number | null }

const dataDir = tempDir('rollout');
const app = fixture('rollout-app');
let enjin: EnjinProcess;

/** enjin.yaml of the app: web ×4 behind a health check, rolled out by `update`, with `env` for the release. */
function manifest(update: string, env: Record<string, string> = {}): void {
  const envLines = Object.entries(env).map(([k, v]) => `      ${k}: "${v}"`).join('\n');
  writeFileSync(join(app, 'enjin.yaml'), [
    'project: roll',
    'services:',
    '  web:',
    '    command: node server.js',
    '    instances: 4',
    '    hostnames: [roll.localhost]',
    '    health: { http: /healthz, interval: 1s, start_timeout: 30 }',
    `    update: ${update}`,
    ...(envLines ? ['    env:', envLines] : []),
    '',
  ].join('\n'));
}

async function running(): Promise<Ps[]> {
  const r = await enjin.cli(['--json', 'ps', 'roll']);
  assert.equal(r.code, 0, r.stderr);
  return (r.json as { instances: Ps[] }).instances.filter((i) => i.service === 'web' && i.desired === 'running');
}

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
  manifest('{ canary: 1, parallelism: 1, min_healthy_time: 1s, healthy_deadline: 60s }');
  // The first deploy has nothing running to roll over: it starts all four at once.
  const first = await enjin.cli(['deploy', app], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, first.stderr + first.stdout);
  await eventually(async () => (await running()).filter((i) => i.state === 'running').length === 4, 'web ×4 of v1 running', 120_000);
});

after(async () => {
  await enjin?.cli(['destroy', 'roll']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, app);
});

test('a canary at 1 of 4 takes its share, the deploy pauses; promoted, every instance runs the new version', { timeout: 600_000 }, async () => {
  manifest('{ canary: 1, parallelism: 1, min_healthy_time: 1s, healthy_deadline: 60s }', { MARK: 'two' });
  const { result, failures, requests } = await underLoad(enjin.routerPort, 'roll.localhost', async () => {
    const deployed = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
    assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
    assert.equal(deployed.json.rollout.phase, 'paused');
    assert.match(deployed.stderr + deployed.stdout, /enjin deploy --promote --project roll/);
    const paused = await running();
    assert.deepEqual(paused.map((i) => i.version).sort(), [1, 1, 1, 1, 2], 'one canary beside the four old instances');

    // The canary is a surge over the wanted four, yet weighed to take one instance's share: about a quarter (the
    // steady load shares the router's rotation with these samples, so the bounds are loose).
    let canary = 0;
    const samples = 400;
    for (let k = 0; k < samples; k++) {
      const r = await viaRouter(enjin.routerPort, 'roll.localhost');
      assert.equal(r.status, 200, r.body);
      if (r.body.startsWith('version 2 ')) canary++;
    }
    assert.ok(canary > samples * 0.1 && canary < samples * 0.4, `the canary answered ${canary} of ${samples} requests`);

    const promoted = await enjin.cli(['--json', 'deploy', '--promote', '--project', 'roll'], { timeoutMs: 300_000 });
    assert.equal(promoted.code, 0, promoted.stderr + promoted.stdout);
    assert.equal(promoted.json.job.state, 'succeeded');
    return promoted;
  });
  assert.ok(result);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  const after = await running();
  assert.deepEqual(after.map((i) => i.version), [2, 2, 2, 2]);
  const again = await enjin.cli(['--json', 'deploy', '--promote', '--project', 'roll']);
  assert.notEqual(again.code, 0);
  assert.equal(JSON.parse(again.stderr).error.code, 'no_paused_rollout');
});

test('a version that fails its health check is rolled back: non-zero exit with the probe\'s output, v2 serving throughout', { timeout: 600_000 }, async () => {
  const before = (await running()).map((i) => i.id).sort();
  manifest('{ parallelism: 1, healthy_deadline: 20s, auto_rollback: true }', { FAIL_HEALTH: '1' });
  const { result: deployed, failures, requests } = await underLoad(enjin.routerPort, 'roll.localhost', () => enjin.cli(['deploy', app], { timeoutMs: 300_000 }));
  assert.notEqual(deployed.code, 0, deployed.stdout);
  assert.match(deployed.stderr + deployed.stdout, /database unreachable/);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
  const after = await running();
  assert.deepEqual(after.map((i) => i.id).sort(), before, 'the old instances kept running');
  assert.ok(after.every((i) => i.version === 2));
  const body = await viaRouter(enjin.routerPort, 'roll.localhost');
  assert.match(body.body, /^version 2 /);
  // The rollback is an event naming the project and the service, with the probe's words; so was the canary's pause.
  const events = await eventually(async () => {
    const r = await enjin.cli(['--json', 'events', '--project', 'roll']);
    const list = (r.json as { events: Array<{ kind: string; service?: string; message: string; at: string }> }).events;
    return list.some((e) => e.kind === 'rollout-rolled-back') ? list : undefined;
  }, 'the rollback in enjin events');
  const rolledBack = events.find((e) => e.kind === 'rollout-rolled-back')!;
  assert.equal(rolledBack.service, 'web');
  assert.match(rolledBack.message, /rolled back to v2: .*database unreachable/);
  assert.ok(events.some((e) => e.kind === 'rollout-paused' && e.service === 'web'));
});
