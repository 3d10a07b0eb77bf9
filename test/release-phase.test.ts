// End to end with `enjin up`: a Procfile's `release:` line runs once per deploy, after the build and before any
// instance starts (what it wrote is there when the app starts); a failing release fails the deploy with its output,
// and the version before keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, tempDir, viaRouter } from './support/enjin.ts';

const dataDir = tempDir('release');
const app = tempDir('release-app');
let enjin: EnjinProcess;

// The app answers with what the release wrote beside it (its version's directory), and how many times it ran.
const server = `require('http').createServer((q, s) => {
  let seen = 'nothing';
  try { seen = require('fs').readFileSync('released.txt', 'utf8').trim().split('\\n').join('+'); } catch {}
  s.end('release saw: ' + seen + ' / ' + process.env.MARK + '\\n');
}).listen(process.env.PORT);`;

function write(release: string, mark: string): void {
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'server.js'), server);
  writeFileSync(join(app, 'Procfile'), `web: node server.js\nrelease: ${release}\n`);
  writeFileSync(join(app, 'enjin.yaml'), `project: rel\nenv:\n  MARK: ${mark}\n`);
}

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
});

after(async () => {
  await enjin?.cli(['destroy', 'rel', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, app);
});

test('release: runs once before instances start; a failing one fails the deploy and the previous version keeps serving', { timeout: 600_000 }, async () => {
  write(`sh -c 'echo "migrated $MARK" >> released.txt'`, 'one');
  const first = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const tree = JSON.stringify(first.json.job);
  assert.match(tree, /"kind":"release"/);
  assert.match(tree, /migrated one|running `sh -c/);
  const res = await viaRouter(enjin.routerPort, 'rel.localhost');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'release saw: migrated one / one\n', 'the release ran once, before the instance started');

  // A scale starts more instances of the same version: no release again.
  const scaled = await enjin.cli(['--json', 'scale', 'web=2', '--project', 'rel'], { timeoutMs: 300_000 });
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  assert.doesNotMatch(JSON.stringify(scaled.json.job), /"kind":"release"/);

  write(`sh -c 'echo "cannot reach the database"; exit 3'`, 'two');
  const failed = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
  assert.notEqual(failed.code, 0, 'a failing release fails the deploy');
  const failedTree = JSON.stringify(failed.json ?? failed.stderr);
  assert.match(failedTree + failed.stderr, /release command .* exited with code 3/);
  assert.match(failedTree + failed.stderr, /cannot reach the database/);
  // Nothing changed: v1 is current and serves, no v2 instance runs.
  for (let k = 0; k < 5; k++) assert.equal((await viaRouter(enjin.routerPort, 'rel.localhost')).body, 'release saw: migrated one / one\n');
  const ps = await enjin.cli(['--json', 'ps', 'rel']);
  const running = (ps.json.instances as Array<{ version: number; desired: string }>).filter((i) => i.desired === 'running');
  assert.ok(running.length >= 1 && running.every((i) => i.version === 1), JSON.stringify(running));
});
