// Tests for a node's volume directories: made private to the app user, named in ENJIN_VOLUME_*, measured, removed.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppAccounts } from './app-accounts.ts';
import { checkVolumes, volumeEnv, VolumeStore } from './volumes.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-volumes-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const mode = (p: string) => statSync(p).mode & 0o777;

test('variables are named after the volume, upper-cased, dashes as underscores', () => {
  assert.deepEqual(volumeEnv({ data: '/v/data', 'media-files': '/v/m' }), { ENJIN_VOLUME_DATA: '/v/data', ENJIN_VOLUME_MEDIA_FILES: '/v/m' });
});

test('volumes from the bus are checked before they reach the file system', () => {
  assert.throws(() => checkVolumes({ '../x': '/data' }), /not valid/);
  assert.throws(() => checkVolumes({ data: 'rel' }), /absolute/);
  assert.throws(() => checkVolumes(['data']), /must map/);
  assert.deepEqual(checkVolumes(undefined), {});
  const store = new VolumeStore(join(dir, 'bad'), new AppAccounts(join(dir, 'bad-homes'), dir));
  assert.throws(() => store.ensure('default', '../etc', { data: '/data' }), /not a valid name/);
});

test('a volume is made once, private to the app user, keeps its files, is measured and removed only when asked', async () => {
  const accounts = new AppAccounts(join(dir, 'homes'), dir);
  await accounts.init();
  let news = 0;
  const store = new VolumeStore(join(dir, 'volumes'), accounts, () => news++);
  // A measure of no volume at all ends at once; the next one still sees volumes made since.
  assert.deepEqual(await store.measure(), []);
  const env = store.ensure('default', 'shop', { data: '/data' });
  const data = join(dir, 'volumes', 'default', 'shop', 'data');
  assert.deepEqual(env, { ENJIN_VOLUME_DATA: data });
  assert.equal(mode(data), 0o700);
  const owner = accounts.owner('shop');
  if (owner) {
    assert.equal(statSync(data).uid, owner.uid, 'owned by the app user');
    assert.equal(mode(join(dir, 'volumes')), 0o711, 'others may pass, not list');
  }
  assert.equal(news, 1);
  writeFileSync(join(data, 'db.sqlite3'), 'x'.repeat(1000));
  store.ensure('default', 'shop', { data: '/elsewhere' });
  assert.equal(news, 1, 'an existing volume is not new');
  assert.equal(statSync(join(data, 'db.sqlite3')).size, 1000, 'its files are kept');

  assert.deepEqual(store.list().map((v) => [v.project, v.name, v.sizeBytes]), [['shop', 'data', null]]);
  const measured = await store.measure();
  assert.equal(measured.length, 1, 'a volume made after an earlier measure is measured');
  assert.equal(measured[0].sizeBytes, 1000);
  assert.ok(measured[0].measuredAt);

  store.ensure('default', 'other', { data: '/data' });
  assert.deepEqual(store.drop('default', 'shop').map((v) => v.name), ['data']);
  assert.equal(existsSync(data), false);
  assert.equal(existsSync(join(dir, 'volumes', 'default', 'other', 'data')), true, "another project's volume stays");
});
