import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../../bus/memory.ts';
import { SignedBus, type KeyRing } from '../../bus/signing.ts';
import { loadOrCreateIdentity, StaticKeyRing, type Identity } from '../../bus/identity.ts';
import type { BusMessage } from '../../bus/bus.ts';
import { TrustWindow } from './trust-window.ts';

let dir: string;
let controller: Identity;
let nodeA: Identity;
let nodeB: Identity;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'enjin-trust-'));
  controller = await loadOrCreateIdentity(join(dir, 'controller'), { id: 'ctl_1' });
  nodeA = await loadOrCreateIdentity(join(dir, 'a'), { id: 'node_a' });
  nodeB = await loadOrCreateIdentity(join(dir, 'b'), { id: 'node_b' });
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
}

function listening(inner: MemoryBus, keyring: KeyRing) {
  const bus = new SignedBus(inner, { identity: controller, keyring, ownsInner: false });
  const got: BusMessage[] = [];
  bus.subscribe('state.>', (m) => got.push(m));
  return { bus, got };
}

const presenting = (inner: MemoryBus, who: Identity, key: Identity = who) =>
  new SignedBus(inner, { identity: { id: who.id, privateKey: key.privateKey, publicKeyB64: key.publicKeyB64 }, presentKey: true, ownsInner: false });

test('a presented key is ignored by a ring that does not trust on first use', async () => {
  const inner = new MemoryBus();
  const { bus, got } = listening(inner, new StaticKeyRing([[controller.id, controller.publicKey]]));
  presenting(inner, nodeA).publish('state.node_a', { hello: 1 });
  await until(() => bus.rejected.unknownKey === 1, 'refused as an unknown key');
  assert.deepEqual(got, []);
  await inner.close();
});

test('while the window is open a node proving its presented key is admitted with it, and only with it', async () => {
  let now = 1_000_000;
  const window = new TrustWindow({ windowMs: 60_000, now: () => now });
  const bound: string[] = [];
  window.onBound((id) => bound.push(id));
  const inner = new MemoryBus();
  const { bus, got } = listening(inner, window);

  // A forger presents its own key under node A's id, signing with that key: it verifies, but only as the key it
  // presented, so it could claim a node nobody has bound yet. The real node A spoke first here.
  presenting(inner, nodeA).publish('state.node_a', { from: 'a' });
  await until(() => got.length === 1, 'node A admitted');
  assert.deepEqual(bound, ['node_a']);
  assert.equal(got[0].sender, 'node_a');
  // Once bound, another key for the same id is a bad signature, presented or not.
  presenting(inner, nodeA, nodeB).publish('state.node_a', { from: 'impostor' });
  await until(() => bus.rejected.badSignature === 1, 'the impostor refused');
  // A presented key that does not match the signature binds nothing: node B can still prove its own afterwards.
  const forged = new SignedBus(inner, { identity: { id: nodeB.id, privateKey: nodeA.privateKey, publicKeyB64: nodeB.publicKeyB64 }, presentKey: true, ownsInner: false });
  forged.publish('state.node_b', { from: 'forged' });
  await until(() => bus.rejected.badSignature === 2, 'the forged message refused');
  assert.equal(window.publicKey('node_b'), null);
  presenting(inner, nodeB).publish('state.node_b', { from: 'b' });
  await until(() => got.length === 2, 'node B admitted');
  assert.deepEqual(bound, ['node_a', 'node_b']);
  assert.deepEqual(window.bound().map((b) => b.id).sort(), ['node_a', 'node_b']);

  // After the window a new node is refused, and the bound ones are still trusted.
  now += 60_000;
  const nodeC = await loadOrCreateIdentity(join(dir, 'c'), { id: 'node_c' });
  presenting(inner, nodeC).publish('state.node_c', { from: 'c' });
  await until(() => bus.rejected.unknownKey === 1, 'node C refused after the window');
  presenting(inner, nodeA).publish('state.node_a', { from: 'a again' });
  await until(() => got.length === 3, 'node A still trusted');
  await inner.close();
});

test('only node ids are taken on trust, and closing the window early ends it', async () => {
  const window = new TrustWindow({ windowMs: 60_000 });
  assert.equal(window.offered('ctl_x', nodeA.publicKeyB64), null);
  assert.equal(window.offered('node_a', 'not a key'), null);
  assert.ok(window.offered('node_a', nodeA.publicKeyB64));
  window.close();
  assert.equal(window.open, false);
  assert.equal(window.offered('node_a', nodeA.publicKeyB64), null);
});

test('a listener that comes after a node proved its key still hears of that node, once', async () => {
  // The bus binds keys from the moment the controller connects; the recovery registers its listener later. A node
  // whose signed message came in between was once bound yet never inventoried, and the rebuild waited for it forever.
  const window = new TrustWindow({ windowMs: 60_000 });
  window.confirmed('node_a', nodeA.publicKeyB64);
  const heard: string[] = [];
  const keys: Record<string, string> = { node_a: nodeA.publicKeyB64, node_b: nodeB.publicKeyB64 };
  window.onBound((id, key) => heard.push(`${id} ${key === keys[id]}`));
  assert.deepEqual(heard, ['node_a true']);
  window.confirmed('node_b', nodeB.publicKeyB64);
  window.confirmed('node_a', nodeA.publicKeyB64);
  assert.deepEqual(heard, ['node_a true', 'node_b true']);
});
