import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IDENTITY_ID_FILE, IDENTITY_KEY_FILE, loadOrCreateIdentity, publicKeyFromB64, StaticKeyRing } from './identity.ts';
import { EnjinError } from '../core/errors.ts';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'enjin-identity-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

test('an identity is created once, kept private, and loaded the same afterwards', async () => {
  const dir = join(root, 'fresh', 'data');
  const first = await loadOrCreateIdentity(dir);
  assert.match(first.id, /^node_/);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, IDENTITY_KEY_FILE)).mode & 0o777, 0o600);
  assert.match(readFileSync(join(dir, IDENTITY_KEY_FILE), 'utf8'), /BEGIN PRIVATE KEY/);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, IDENTITY_ID_FILE), 'utf8')), { id: first.id });
  const again = await loadOrCreateIdentity(dir);
  assert.equal(again.id, first.id);
  assert.equal(again.publicKeyB64, first.publicKeyB64);
  // The reloaded private key signs what the first public key verifies.
  const sig = sign(null, Buffer.from('hello'), again.privateKey);
  assert.equal(verify(null, Buffer.from('hello'), first.publicKey, sig), true);
  assert.equal(verify(null, Buffer.from('hello'), publicKeyFromB64(first.publicKeyB64), sig), true);
});

test('a chosen id names a new identity; an existing one refuses another id; a widened key mode is narrowed again', async () => {
  const dir = join(root, 'named');
  const made = await loadOrCreateIdentity(dir, { id: 'ctl_main' });
  assert.equal(made.id, 'ctl_main');
  assert.equal((await loadOrCreateIdentity(dir, { id: 'ctl_main' })).publicKeyB64, made.publicKeyB64);
  await assert.rejects(loadOrCreateIdentity(dir, { id: 'ctl_other' }), (e: EnjinError) => e.code === 'invalid_config' && /ctl_main/.test(e.message));
  chmodSync(join(dir, IDENTITY_KEY_FILE), 0o644);
  await loadOrCreateIdentity(dir);
  assert.equal(statSync(join(dir, IDENTITY_KEY_FILE)).mode & 0o777, 0o600);
});

test('a damaged key or id file is a clear configuration error, never silently replaced', async () => {
  const dir = join(root, 'damaged');
  await loadOrCreateIdentity(dir);
  writeFileSync(join(dir, IDENTITY_ID_FILE), '{not json');
  await assert.rejects(loadOrCreateIdentity(dir), (e: EnjinError) => e.code === 'invalid_config' && /identity\.json/.test(e.message));
  writeFileSync(join(dir, IDENTITY_KEY_FILE), 'garbage');
  await assert.rejects(loadOrCreateIdentity(dir), (e: EnjinError) => e.code === 'invalid_config' && /identity\.pem/.test(e.message));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(join(dir, IDENTITY_KEY_FILE), rsa);
  await assert.rejects(loadOrCreateIdentity(dir), (e: EnjinError) => e.code === 'invalid_config' && /not Ed25519/.test(e.message));
});

test('publicKeyFromB64 takes Ed25519 SPKI only; StaticKeyRing admits and forgets keys', async () => {
  assert.throws(() => publicKeyFromB64('bm90IGEga2V5'), (e: EnjinError) => e.code === 'invalid_request' && e.status === 400);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  assert.throws(() => publicKeyFromB64(rsa), (e: EnjinError) => e.code === 'invalid_request' && /rsa/.test(e.message));
  const a = await loadOrCreateIdentity(join(root, 'ring-a'));
  const ring = new StaticKeyRing().add(a.id, a.publicKeyB64);
  assert.equal(ring.publicKey(a.id)?.export({ type: 'spki', format: 'der' }).toString('base64'), a.publicKeyB64);
  assert.equal(ring.publicKey('someone'), null);
  assert.equal(ring.remove(a.id), true);
  assert.equal(ring.publicKey(a.id), null);
});
