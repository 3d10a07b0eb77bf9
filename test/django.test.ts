// End to end with `enjin up`: a real Django project keeps its SQLite database in a volume. Its `release:` migration
// creates the table in the volume, a row written through the app survives a code change and redeploy (the second
// migration finds nothing to do), `enjin volumes` shows the database's size, `destroy` keeps the file and
// `destroy --volumes` removes it. Django comes from Debian's python3-django, wheeled by the app's vendor/make_wheels.py
// (the tests cannot reach PyPI).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { appsDirFor } from '../src/agent/app-accounts.ts';
import { cleanup, EnjinProcess, eventually, fixture, tempDir, viaRouter } from './support/enjin.ts';

interface JobTree {
  log?: string[];
  children?: JobTree[];
}
const logLines = (tree: JobTree): string[] => [...(tree.log ?? []), ...(tree.children ?? []).flatMap(logLines)];

/** A python that imports Django: Debian's own (a python3 earlier on PATH, such as pyenv's, may not see dist-packages). */
function pythonWithDjango(): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(python, ['-c', 'import django'], { stdio: 'ignore' });
      return python;
    } catch { /* not this one */ }
  }
  return null;
}

const python = pythonWithDjango();
const dataDir = tempDir('django');
let app = '';
let enjin: EnjinProcess;
const HOST = 'djnotes.localhost';

before(async () => {
  if (!python) return;
  app = fixture('django-app');
  execFileSync(python, [join(app, 'vendor/make_wheels.py')], { stdio: 'ignore' });
  enjin = await EnjinProcess.start(dataDir);
});

after(async () => {
  await enjin?.cli(['destroy', 'djnotes', '--yes', '--volumes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, ...(app ? [app] : []), appsDirFor(join(dataDir, 'agent')));
});

async function notes(): Promise<{ release: string; notes: string[] }> {
  const r = await viaRouter(enjin.routerPort, HOST, '/notes/');
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body);
}

test('Django with SQLite in a volume keeps its rows across a redeploy; destroy keeps the file unless --volumes', { timeout: 900_000, skip: !python && 'python3-django is not installed (.ci/run installs it)' }, async () => {
  const first = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 600_000 });
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const firstLog = logLines(first.json.job);
  assert.ok(firstLog.some((l) => /Applying notes\.0001_initial\.\.\. OK/.test(l)), `the release migrated the database:\n${firstLog.join('\n')}`);
  assert.ok(firstLog.some((l) => /static files? copied to/.test(l)), `collectstatic ran at build time:\n${firstLog.join('\n')}`);
  assert.deepEqual(await notes(), { release: 'first', notes: [] });

  const created = await viaRouter(enjin.routerPort, HOST, '/notes/?text=kept', { method: 'POST' });
  assert.equal(created.status, 201, created.body);
  assert.deepEqual((await notes()).notes, ['kept']);

  // A code change and a redeploy: new version, new directory, same database.
  const views = join(app, 'notes/views.py');
  writeFileSync(views, readFileSync(views, 'utf8').replace('RELEASE = "first"', 'RELEASE = "second"'));
  const second = await enjin.cli(['--json', 'deploy', app], { timeoutMs: 600_000 });
  assert.equal(second.code, 0, second.stderr + second.stdout);
  const secondLog = logLines(second.json.job);
  assert.ok(secondLog.some((l) => /No migrations to apply/.test(l)), `the second migration found the tables in the volume:\n${secondLog.join('\n')}`);
  assert.deepEqual(await notes(), { release: 'second', notes: ['kept'] });

  const listed = await enjin.cli(['--json', 'volumes', '--project', 'djnotes']);
  assert.equal(listed.code, 0, listed.stderr);
  const [volume] = listed.json.volumes as Array<{ name: string; services: string[]; dir: string; sizeBytes: number }>;
  assert.ok(volume, `the volume is listed: ${listed.stdout}`);
  assert.equal(volume.name, 'data');
  assert.deepEqual(volume.services, ['web']);
  const db = join(volume.dir, 'db.sqlite3');
  assert.ok(volume.sizeBytes >= statSync(db).size && statSync(db).size > 0, `the volume's size counts the database (${volume.sizeBytes} bytes)`);

  const destroyed = await enjin.cli(['destroy', 'djnotes', '--yes'], { timeoutMs: 300_000 });
  assert.equal(destroyed.code, 0, destroyed.stderr + destroyed.stdout);
  assert.match(destroyed.stdout, /kept its volume[\s\S]*enjin destroy djnotes --volumes/);
  assert.ok(existsSync(db), 'destroy without --volumes keeps the database');

  const removed = await enjin.cli(['--json', 'destroy', 'djnotes', '--yes', '--volumes'], { timeoutMs: 300_000 });
  assert.equal(removed.code, 0, removed.stderr + removed.stdout);
  assert.deepEqual(removed.json.volumesRemoved.map((v: { name: string }) => v.name), ['data'], 'the volumes a destroyed project left are removed');
  assert.equal(existsSync(volume.dir), false);
  await eventually(async () => ((await enjin.cli(['--json', 'volumes'])).json.volumes as unknown[]).length === 0, 'no volume listed');
});
