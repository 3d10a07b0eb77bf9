// End to end with `enjin up`: a volume is a directory on the node that outlives versions. The app and its release
// command find it in $ENJIN_VOLUME_DATA; what they write there survives a redeploy and a restart; `enjin volumes` lists
// it with its size; a one-off run sees it; `destroy` keeps it (and says how to remove it), `destroy --volumes` removes it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, EnjinProcess, eventually, tempDir, viaRouter } from './support/enjin.ts';

const dataDir = tempDir('volumes');
const app = tempDir('volumes-app');
let enjin: EnjinProcess;

// GET: the notes kept in the volume and the version's mark; POST /note: one more line in the volume.
const server = `const fs = require('fs'), path = require('path');
const file = path.join(process.env.ENJIN_VOLUME_DATA, 'notes.txt');
require('http').createServer((q, s) => {
  if (q.method === 'POST') fs.appendFileSync(file, 'note from ' + process.env.MARK + '\\n');
  let notes = '';
  try { notes = fs.readFileSync(file, 'utf8').trim().split('\\n').join('|'); } catch {}
  let released = '';
  try { released = fs.readFileSync(path.join(process.env.ENJIN_VOLUME_DATA, 'released.txt'), 'utf8').trim().split('\\n').join('|'); } catch {}
  s.end(JSON.stringify({ mark: process.env.MARK, notes, released, dir: process.env.ENJIN_VOLUME_DATA, cache: process.env.ENJIN_VOLUME_PAGE_CACHE ?? null }) + '\\n');
}).listen(process.env.PORT);`;

function write(mark: string): void {
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'server.js'), server);
  writeFileSync(join(app, 'Procfile'), `web: node server.js\nrelease: sh -c 'echo "release $MARK" >> "$ENJIN_VOLUME_DATA/released.txt"'\n`);
  writeFileSync(join(app, 'enjin.yaml'), `project: vols\nvolumes: { data: /data }\nenv:\n  MARK: ${mark}\nservices:\n  web:\n    volumes: { page-cache: /cache }\n`);
}

async function get(): Promise<{ mark: string; notes: string; released: string; dir: string; cache: string | null }> {
  const r = await viaRouter(enjin.routerPort, 'vols.localhost');
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

before(async () => {
  enjin = await EnjinProcess.start(dataDir);
});

after(async () => {
  await enjin?.cli(['destroy', 'vols', '--yes', '--volumes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, app);
});

test('a volume keeps its files across redeploys and restarts, is listed with its size, and goes only with --volumes', { timeout: 600_000 }, async () => {
  write('one');
  const first = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const before = await get();
  assert.equal(before.released, 'release one', 'the release command saw the volume before the instance started');
  assert.match(before.dir, /volumes\/default\/vols\/data$/);
  assert.match(before.cache ?? '', /volumes\/default\/vols\/page-cache$/, 'a service adds its own volumes to the project-wide ones');
  if (process.getuid?.() === 0) {
    assert.equal(statSync(before.dir).mode & 0o777, 0o700, 'private to the app user');
    assert.notEqual(statSync(before.dir).uid, 0, 'owned by the app user, not root');
  }
  const posted = await viaRouter(enjin.routerPort, 'vols.localhost', '/note', { method: 'POST' });
  assert.equal(posted.status, 200);

  write('two');
  const second = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
  assert.equal(second.code, 0, second.stderr + second.stdout);
  const after = await get();
  assert.equal(after.mark, 'two', 'the new version serves');
  assert.equal(after.notes, 'note from one', 'what the first version wrote is there');
  assert.equal(after.released, 'release one|release two');
  assert.equal(after.dir, before.dir);

  const restarted = await enjin.cli(['--json', 'restart', '--project', 'vols'], { timeoutMs: 300_000 });
  assert.equal(restarted.code, 0, restarted.stderr + restarted.stdout);
  assert.equal((await get()).notes, 'note from one');

  // A one-off run of the service sees the volume too, on the node that holds it.
  const ran = await enjin.cli(['run', '--project', 'vols', '--', 'sh', '-c', 'cat "$ENJIN_VOLUME_DATA/notes.txt"'], { timeoutMs: 300_000 });
  assert.equal(ran.code, 0, ran.stderr);
  assert.match(ran.stdout, /note from one/);

  const listed = await enjin.cli(['--json', 'volumes', '--project', 'vols']);
  assert.equal(listed.code, 0, listed.stderr);
  const volumes = listed.json.volumes as Array<{ project: string; name: string; services: string[]; path: string; node: { name: string; state: string }; dir: string; sizeBytes: number; env: string }>;
  assert.deepEqual(volumes.map((v) => [v.project, v.name, v.services, v.path, v.node.state, v.env]), [
    ['vols', 'data', ['web'], '/data', 'ready', 'ENJIN_VOLUME_DATA'],
    ['vols', 'page-cache', ['web'], '/cache', 'ready', 'ENJIN_VOLUME_PAGE_CACHE'],
  ]);
  const data = volumes.find((v) => v.name === 'data')!;
  assert.equal(data.dir, before.dir);
  assert.equal(data.sizeBytes, 'note from one\n'.length + 'release one\nrelease two\n'.length, 'its size is the bytes of its files');
  const human = await enjin.cli(['volumes']);
  assert.match(human.stdout, /PROJECT\s+SERVICES\s+NAME\s+PATH\s+NODE\s+SIZE/);
  assert.match(human.stdout, /vols\s+web\s+data\s+\/data\s+\S+\s+38 B/);

  // destroy keeps the data and says how to remove it; the directory is still on the node.
  const destroyed = await enjin.cli(['destroy', 'vols', '--yes'], { timeoutMs: 300_000 });
  assert.equal(destroyed.code, 0, destroyed.stderr + destroyed.stdout);
  assert.match(destroyed.stdout, /kept its volumes/);
  assert.match(destroyed.stdout, /enjin destroy vols --volumes/);
  assert.ok(existsSync(join(before.dir, 'notes.txt')), 'the volume outlives the project');
  const stillListed = await enjin.cli(['--json', 'volumes']);
  assert.deepEqual((stillListed.json.volumes as Array<{ name: string; services: string[] }>).map((v) => [v.name, v.services]), [['data', []], ['page-cache', []]]);

  // A project of that name deployed again gets its data back.
  const again = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 300_000 });
  assert.equal(again.code, 0, again.stderr + again.stdout);
  assert.equal((await get()).notes, 'note from one');

  const gone = await enjin.cli(['--json', 'destroy', 'vols', '--yes', '--volumes'], { timeoutMs: 300_000 });
  assert.equal(gone.code, 0, gone.stderr + gone.stdout);
  assert.equal(gone.json.job.state, 'succeeded');
  assert.match(JSON.stringify(gone.json.job), /removed volume data of vols/);
  assert.equal(existsSync(before.dir), false, 'destroy --volumes removed the directory');
  await eventually(async () => ((await enjin.cli(['--json', 'volumes'])).json.volumes as unknown[]).length === 0, 'no volume listed');
});
