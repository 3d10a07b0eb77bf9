import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packDirectory } from '../artifact/pack.ts';
import { unpackPackage } from '../artifact/unpack.ts';
import { AppAccounts, appsDirFor } from './app-accounts.ts';
import { APP_USER, ensureSystemUser } from './drivers/system-user.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-accounts-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const root = process.getuid?.() === 0;
const mode = (p: string) => statSync(p).mode & 0o777;

test('as root, a project gets the app user and a HOME private to it; concurrent first uses share one useradd', { skip: !root && 'needs root' }, async () => {
  const [a, b] = await Promise.all([ensureSystemUser(APP_USER), ensureSystemUser(APP_USER)]);
  assert.deepEqual(a, b);
  assert.notEqual(a.uid, 0);
  assert.notEqual(a.gid, 0);
  const accounts = new AppAccounts(join(dir, 'homes'), '/root');
  await accounts.init();
  assert.equal(accounts.separate, true);
  assert.equal(mode(join(dir, 'homes')), 0o711, 'homes can be passed through, not listed');
  const account = accounts.forProject('shop');
  assert.deepEqual({ uid: account.uid, gid: account.gid }, { uid: a.uid, gid: a.gid });
  assert.equal(account.home, join(dir, 'homes', 'shop'));
  assert.equal(mode(account.home), 0o700);
  assert.equal(statSync(account.home).uid, a.uid);
  assert.throws(() => accounts.forProject('../etc'), /not a valid id/);
});

test('a version unpacked for an owner is that owner\'s alone, links included, before it appears', { skip: !root && 'needs root' }, async () => {
  const app = join(dir, 'app');
  mkdirSync(join(app, 'lib'), { recursive: true });
  writeFileSync(join(app, 'server.js'), 'x');
  writeFileSync(join(app, 'lib', 'a.js'), 'y');
  symlinkSync('server.js', join(app, 'main.js'));
  const packed = await packDirectory(app);
  const tarball = join(dir, 'app.tar.gz');
  writeFileSync(tarball, packed.tarball);
  const user = await ensureSystemUser(APP_USER);
  const dest = join(dir, 'versions', 'v1');
  await unpackPackage(tarball, dest, packed.sha256, undefined, { uid: user.uid, gid: user.gid });
  assert.equal(mode(dest), 0o700);
  for (const p of [dest, join(dest, 'server.js'), join(dest, 'lib'), join(dest, 'lib', 'a.js')]) assert.equal(statSync(p).uid, user.uid, p);
  assert.equal(lstatSync(join(dest, 'main.js')).uid, user.uid, 'the link itself');
  // without an owner: as before, readable like any directory
  await unpackPackage(tarball, join(dir, 'versions', 'v2'), packed.sha256);
  assert.equal(mode(join(dir, 'versions', 'v2')), 0o755);
});

test('apps\' files stay in the agent directory if apps can pass through to it, else move under /var/lib/enjin', { skip: !root && 'needs root' }, () => {
  const open = join(dir, 'open', 'agent');
  mkdirSync(open, { recursive: true });
  chmodSync(dir, 0o711);
  assert.equal(appsDirFor(open), open);
  const closed = join(dir, 'closed');
  mkdirSync(join(closed, 'agent'), { recursive: true });
  chmodSync(closed, 0o700);
  assert.match(appsDirFor(join(closed, 'agent')), /^\/var\/lib\/enjin\/apps-[0-9a-f]{12}$/);
  assert.equal(appsDirFor(join(closed, 'agent')), appsDirFor(join(closed, 'agent')), 'the same directory every start');
});
