// End to end: a node short of disk (a threshold above its real free space stands in for a full disk) refuses new
// deploys with node_disk_full, and says how much is free and what to do.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { EnjinProcess, cleanup, fixture, tempDir } from './support/enjin.ts';

const dirs: string[] = [];
let enjin: EnjinProcess | undefined;
after(async () => {
  await enjin?.stop('SIGINT');
  cleanup(...dirs);
});

test('a deploy to a node below --min-free-disk is refused with node_disk_full', async () => {
  const dataDir = tempDir('diskfull');
  const app = fixture('procfile-app');
  dirs.push(dataDir, app);
  enjin = await EnjinProcess.start(dataDir, ['--min-free-disk', '1000000T']);
  const r = await enjin.cli(['deploy', app, '--project', 'full'], { timeoutMs: 120_000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /node_disk_full/);
  assert.match(r.stderr, /has \d+ MiB free for versions and logs, less than its minimum/);
  assert.match(r.stderr, /--min-free-disk/);
  const ps = await enjin.cli(['--json', 'ps', 'full']);
  assert.deepEqual(ps.json?.instances ?? [], [], 'nothing was started');
  assert.match(enjin.output, /less than its minimum/, 'the agent warned in its log');
  const nodes = await enjin.cli(['nodes']);
  assert.match(nodes.stdout, /DISK FREE/);
  assert.match(nodes.stdout, /\d+(\.\d)?[KMGT] \(LOW\)/, '`enjin nodes` shows the low disk');
});
