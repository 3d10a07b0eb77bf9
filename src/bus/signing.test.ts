import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryBus } from './memory.ts';
import { SignedBus, isEnvelope, type Envelope } from './signing.ts';
import { loadOrCreateIdentity, StaticKeyRing, type Identity } from './identity.ts';
import { busConformance } from './conformance.ts';
import { EnjinError } from '../core/errors.ts';
import type { Bus, BusMessage } from './bus.ts';

let dir: string;
let controller: Identity;
let nodeA: Identity;
let stranger: Identity;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'enjin-signing-'));
  controller = await loadOrCreateIdentity(join(dir, 'controller'), { id: 'ctl_1' });
  nodeA = await loadOrCreateIdentity(join(dir, 'a'), { id: 'node_a' });
  stranger = await loadOrCreateIdentity(join(dir, 'stranger'), { id: 'node_x' });
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** What the controller admitted: itself and node A, never the stranger. */
const admitted = () => new StaticKeyRing([[controller.id, controller.publicKey], [nodeA.id, nodeA.publicKeyB64]]);

busConformance('SignedBus over MemoryBus', async () => {
  const inner = new MemoryBus();
  const bus = new SignedBus(inner, { identity: controller, keyring: admitted(), ownsInner: false });
  const peer = new SignedBus(inner, { identity: nodeA, keyring: admitted(), ownsInner: false });
  return {
    bus,
    peer,
    senders: { bus: controller.id, peer: nodeA.id },
    close: async () => {
      await bus.close();
      await peer.close();
      await inner.close();
    },
  };
});

/** Resolves once `condition` holds; fails after 10 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const total = (b: SignedBus) => Object.values(b.rejected).reduce((a, n) => a + n, 0);

/** A receiving controller and the list of what it accepted on `subject`. */
function receiver(inner: Bus, subject: string, opts: ConstructorParameters<typeof SignedBus>[1] = {}) {
  const bus = new SignedBus(inner, { identity: controller, keyring: admitted(), ownsInner: false, ...opts });
  const got: BusMessage[] = [];
  bus.subscribe(subject, (m) => got.push(m));
  return { bus, got };
}

test('a message from a key nobody admitted is dropped and counted as unknownKey; so is a request, with a clear answer', async () => {
  const inner = new MemoryBus();
  const { bus, got } = receiver(inner, 'state.>');
  bus.handle('nodes.hello', async () => 'welcome');
  const evil = new SignedBus(inner, { identity: stranger, ownsInner: false });
  const friend = new SignedBus(inner, { identity: nodeA, ownsInner: false });
  evil.publish('state.node_x', { instances: [] });
  friend.publish('state.node_a', { instances: [1] });
  await until(() => got.length === 1 && total(bus) === 1, 'one accepted, one rejected');
  assert.deepEqual(got.map((m) => [m.sender, m.data]), [['node_a', { instances: [1] }]]);
  assert.deepEqual(bus.rejected, { unknownKey: 1, badSignature: 0, unsigned: 0, stale: 0 });
  await assert.rejects(evil.request('nodes.hello', null), (e: EnjinError) => e.code === 'bus_rejected' && e.status === 401 && /not admitted/.test(e.message));
  assert.equal(bus.rejected.unknownKey, 2);
  assert.equal(await friend.request('nodes.hello', null), 'welcome');
  await inner.close();
});

test("a node signing with its own key but claiming another node's id is dropped as badSignature", async () => {
  const inner = new MemoryBus();
  const { bus, got } = receiver(inner, 'state.>');
  // The stranger knows node A's id but not its key.
  const impostor = new SignedBus(inner, { identity: { id: nodeA.id, privateKey: stranger.privateKey }, ownsInner: false });
  impostor.publish('state.node_a', { instances: [] });
  await until(() => total(bus) === 1, 'the rejection');
  assert.deepEqual(got, []);
  assert.equal(bus.rejected.badSignature, 1);
  await inner.close();
});

test('a tampered body, a forged signature, a signed message replayed on another subject: all badSignature', async () => {
  const inner = new MemoryBus();
  const { bus, got } = receiver(inner, 'state.>');
  const genuine: Envelope[] = [];
  inner.subscribe('capture.me', (m) => void (isEnvelope(m.data) && genuine.push(m.data)));
  const friend = new SignedBus(inner, { identity: nodeA, ownsInner: false });
  friend.publish('capture.me', { instances: ['web'] });
  await until(() => genuine.length === 1, 'the captured envelope');
  const envelope = genuine[0];
  inner.publish('state.node_a', { ...envelope, body: JSON.stringify({ instances: [] }) });
  inner.publish('state.node_a', { ...envelope, sig: Buffer.alloc(64, 7).toString('base64') });
  inner.publish('state.node_a', envelope);
  await until(() => bus.rejected.badSignature === 3, 'three rejections');
  // The same envelope on the subject it was signed for is fine.
  inner.publish('state.capture', envelope);
  const onCapture = receiver(inner, 'capture.me');
  inner.publish('capture.me', envelope);
  await until(() => onCapture.got.length === 1, 'the genuine message');
  assert.deepEqual(onCapture.got[0], { subject: 'capture.me', data: { instances: ['web'] }, sender: 'node_a' });
  assert.deepEqual(got, []);
  assert.equal(bus.rejected.badSignature, 4, 'state.capture was not the subject signed either');
  await inner.close();
});

test('an unsigned message is dropped and counted when this side has a keyring, accepted with no sender when it has none', async () => {
  const inner = new MemoryBus();
  const { bus, got } = receiver(inner, 'state.>');
  const trusting = receiver(inner, 'state.>', { keyring: null });
  inner.publish('state.node_a', { instances: [] });
  new SignedBus(inner, { identity: stranger, ownsInner: false }).publish('state.node_x', 'claimed');
  await until(() => trusting.got.length === 2 && total(bus) === 2, 'both seen');
  assert.deepEqual(got, []);
  assert.deepEqual(bus.rejected, { unknownKey: 1, badSignature: 0, unsigned: 1, stale: 0 });
  // Without a keyring the claimed sender is reported as it came: a receiver must not act on it as proof.
  assert.deepEqual(trusting.got.map((m) => m.sender).sort(), [null, 'node_x'].sort());
  await inner.close();
});

test('a message signed more than the allowed skew away from this clock is dropped as stale', async () => {
  const inner = new MemoryBus();
  const now = Date.parse('2026-01-01T00:00:00Z');
  const { bus, got } = receiver(inner, 'state.>', { now: () => now });
  const late = new SignedBus(inner, { identity: nodeA, ownsInner: false, now: () => now - 5 * 60_000 - 1 });
  const early = new SignedBus(inner, { identity: nodeA, ownsInner: false, now: () => now + 5 * 60_000 + 1 });
  const onTime = new SignedBus(inner, { identity: nodeA, ownsInner: false, now: () => now - 4 * 60_000 });
  late.publish('state.node_a', 'late');
  early.publish('state.node_a', 'early');
  onTime.publish('state.node_a', 'fine');
  await until(() => got.length === 1 && total(bus) === 2, 'two stale, one fine');
  assert.equal(bus.rejected.stale, 2);
  assert.deepEqual(got.map((m) => m.data), ['fine']);
  await inner.close();
});

test('replies are signed by the responder and verified by the requester, and bound to their request', async () => {
  const inner = new MemoryBus();
  const replies: unknown[] = [];
  // The requester's view of the wire, so a genuine reply can be captured and replayed.
  const spied: Bus = {
    publish: (s, d) => inner.publish(s, d),
    subscribe: (s, h, o) => inner.subscribe(s, h, o),
    handle: (s, r, o) => inner.handle(s, r, o),
    request: async (s, d, o) => {
      const reply = await inner.request(s, d, o);
      replies.push(reply);
      return reply as never;
    },
    onStatus: (l) => inner.onStatus(l),
    close: () => inner.close(),
  };
  const agent = new SignedBus(spied, { identity: nodeA, keyring: admitted(), ownsInner: false });
  const ctl = new SignedBus(inner, { identity: controller, keyring: admitted(), ownsInner: false });
  const honest = ctl.handle('desired.get', async (d, meta) => ({ for: meta.sender, asked: d }));
  assert.deepEqual(await agent.request('desired.get', 1), { for: 'node_a', asked: 1 });
  assert.ok(isEnvelope(replies[0]) && replies[0].from === 'ctl_1', 'the reply travelled signed by the controller');
  honest.unsubscribe();

  // A responder the agent never admitted: its answer is refused.
  const evil = new SignedBus(inner, { identity: stranger, keyring: admitted(), ownsInner: false });
  const evilSub = evil.handle('desired.get', async () => ({ instances: [] }));
  await assert.rejects(agent.request('desired.get', 2), (e: EnjinError) => e.code === 'bus_rejected' && e.status === 502);
  assert.equal(agent.rejected.unknownKey, 1);
  evilSub.unsubscribe();

  // The controller's genuine old answer, replayed to a new request: bound to the old request, so refused.
  const replayer = inner.handle('desired.get', async () => replies[0]);
  await assert.rejects(agent.request('desired.get', 3), (e: EnjinError) => e.code === 'bus_rejected');
  assert.equal(agent.rejected.badSignature, 1);
  replayer.unsubscribe();

  // An unsigned answer to a requester with a keyring.
  inner.handle('desired.get', async () => ({ instances: [] }));
  await assert.rejects(agent.request('desired.get', 4), (e: EnjinError) => e.code === 'bus_rejected');
  assert.equal(agent.rejected.unsigned, 1);
  await inner.close();
});

test('a responder error travels back to a signed requester as it was thrown', async () => {
  const inner = new MemoryBus();
  const ctl = new SignedBus(inner, { identity: controller, keyring: admitted(), ownsInner: false });
  const agent = new SignedBus(inner, { identity: nodeA, keyring: admitted(), ownsInner: false });
  ctl.handle('jobs.start', async () => {
    throw new EnjinError('no_ready_nodes', 'no node can take it', { status: 503 });
  });
  await assert.rejects(agent.request('jobs.start', null), (e: EnjinError) => e.code === 'no_ready_nodes' && e.status === 503);
  await inner.close();
});

test('rejections are warned about at most once per sender per interval, with what was suppressed', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const inner = new MemoryBus();
  let now = 1_000_000;
  const { bus } = receiver(inner, 'state.>', { logger: pino(sink), now: () => now, warnEveryMs: 60_000 });
  const evil = new SignedBus(inner, { identity: stranger, ownsInner: false, now: () => now });
  for (let i = 0; i < 5; i++) evil.publish('state.node_x', i);
  inner.publish('state.node_a', 'unsigned');
  await until(() => total(bus) === 6, 'six rejections');
  await until(() => lines.length === 2, 'two warnings');
  assert.deepEqual(lines.map((l) => [l.sender, l.reason]), [['node_x', 'unknownKey'], ['(unsigned)', 'unsigned']]);
  now += 60_000;
  evil.publish('state.node_x', 'again');
  await until(() => lines.length === 3, 'a third warning once the interval passed');
  assert.equal(lines[2].suppressedSinceLastWarning, 4);
  assert.equal(bus.rejected.unknownKey, 6);
  await inner.close();
});

test('a SignedBus without an identity sends plain payloads, and closing it closes the inner bus it owns', async () => {
  const inner = new MemoryBus();
  const seen: unknown[] = [];
  inner.subscribe('plain', (m) => seen.push(m.data));
  const bus = new SignedBus(inner, { keyring: admitted() });
  bus.publish('plain', { a: 1 });
  await until(() => seen.length === 1, 'the message');
  assert.deepEqual(seen, [{ a: 1 }]);
  await bus.close();
  await assert.rejects(inner.request('anything', null), (e: EnjinError) => e.code === 'bus_closed');
});
