// The cases every Bus backend must pass, run by each backend's test file: `bus` and `peer` are two views of one bus
// (the same object for MemoryBus; two clients of one relay across processes; two connections to one nats-server; two
// signing wrappers with their own identities over one inner bus).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus, BusMessage, BusStatus } from './bus.ts';
import { EnjinError } from '../core/errors.ts';

export interface BusPair {
  bus: Bus;
  peer: Bus;
  close(): Promise<void>;
  /** the sender a receiver sees for what `bus` and `peer` send; both null (the default) where nothing signs */
  senders?: { bus: string | null; peer: string | null };
  /** networked backends: take the server away and bring it back (on the same address), to test onStatus */
  outage?: { stop(): Promise<void>; start(): Promise<void> };
}

/** Resolves once `subject` has been seen by a subscriber on `on`: deliveries are ordered, so earlier ones arrived. */
async function barrier(on: Bus, from: Bus, subject: string): Promise<void> {
  let sub: { unsubscribe(): void } | undefined;
  const seen = new Promise<void>((resolve) => {
    sub = on.subscribe(subject, () => resolve());
  });
  // A relay needs the subscription to reach it before the publish does: ask again until it arrives.
  const timer = setInterval(() => from.publish(subject, null), 50);
  from.publish(subject, null);
  try {
    await seen;
  } finally {
    clearInterval(timer);
    sub?.unsubscribe();
  }
}

export function busConformance(name: string, open: () => Promise<BusPair>): void {
  const withPair = (title: string, fn: (p: BusPair) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const pair = await open();
      try {
        await fn(pair);
      } finally {
        await pair.close();
      }
    });

  withPair('publish delivers a copy to every matching subscriber, asynchronously, and only to those', async ({ bus, peer }) => {
    const got: BusMessage[] = [];
    bus.subscribe('x.*', (m) => got.push(m));
    bus.subscribe('x.>', (m) => got.push(m));
    bus.subscribe('y', () => got.push({ subject: 'wrong', data: null, sender: null }));
    await barrier(bus, peer, 'sync.1');
    const payload = { n: 1, nested: { list: [1, 2] } };
    peer.publish('x.1', payload);
    assert.equal(got.length, 0, 'delivery is not synchronous');
    peer.publish('x.1.deep', { n: 2 });
    await barrier(bus, peer, 'sync.2');
    assert.deepEqual(got.map((m) => [m.subject, m.data]), [['x.1', payload], ['x.1', payload], ['x.1.deep', { n: 2 }]]);
    assert.notEqual(got[0].data, payload, 'subscribers get a copy');
    assert.notEqual(got[0].data, got[1].data, 'each subscriber gets its own copy');
  });

  withPair('unsubscribe stops delivery', async ({ bus, peer }) => {
    const got: unknown[] = [];
    const sub = bus.subscribe('u', (m) => got.push(m.data));
    await barrier(bus, peer, 'sync.u1');
    peer.publish('u', 1);
    await barrier(bus, peer, 'sync.u2');
    sub.unsubscribe();
    peer.publish('u', 2);
    await barrier(bus, peer, 'sync.u3');
    assert.deepEqual(got, [1]);
  });

  withPair('request/reply carries answers and coded errors both ways, and times out', async ({ bus, peer }) => {
    bus.handle('svc', async (d, { subject }) => {
      const x = (d as { x: number }).x;
      if (x < 0) throw new EnjinError('invalid_request', 'x must be positive', { status: 422 });
      if (x === 0) await new Promise((r) => setTimeout(r, 1_000));
      return { y: x * 2, subject };
    });
    peer.handle('plain', async () => {
      throw new Error('boom');
    });
    await barrier(bus, peer, 'sync.r');
    await barrier(peer, bus, 'sync.r2');
    assert.deepEqual(await peer.request('svc', { x: 2 }), { y: 4, subject: 'svc' });
    assert.deepEqual(await bus.request('svc', { x: 3 }), { y: 6, subject: 'svc' });
    await assert.rejects(peer.request('svc', { x: -1 }), (e: EnjinError) => e instanceof EnjinError && e.code === 'invalid_request' && e.status === 422 && e.message === 'x must be positive');
    await assert.rejects(bus.request('plain', {}), (e: EnjinError) => e instanceof EnjinError && e.code === 'internal' && e.status === 500 && /boom/.test(e.message));
    await assert.rejects(peer.request('svc', { x: 0 }, { timeoutMs: 50 }), (e: EnjinError) => e.code === 'bus_timeout' && e.status === 504);
    await assert.rejects(peer.request('nobody', {}), (e: EnjinError) => e.code === 'bus_no_responder' && e.status === 503);
  });

  withPair('a responder stops answering once unsubscribed; handle takes concrete subjects only', async ({ bus, peer }) => {
    const sub = bus.handle('once', async () => 'here');
    await barrier(bus, peer, 'sync.h1');
    assert.equal(await peer.request('once', null), 'here');
    sub.unsubscribe();
    await barrier(bus, peer, 'sync.h2');
    await assert.rejects(peer.request('once', null), (e: EnjinError) => e.code === 'bus_no_responder');
    assert.throws(() => bus.handle('a.*', async () => null));
    assert.throws(() => bus.handle('a.>', async () => null));
  });

  withPair('a closed bus refuses requests and delivers nothing', async ({ bus, peer }) => {
    const got: unknown[] = [];
    peer.subscribe('after', (m) => got.push(m.data));
    await barrier(peer, bus, 'sync.c1');
    await bus.close();
    bus.publish('after', 1);
    await assert.rejects(bus.request('anything', null), (e: EnjinError) => e.code === 'bus_closed' && e.status === 503);
    if (peer !== bus) {
      peer.publish('after', 2);
      await barrier(peer, peer, 'sync.c2');
      assert.deepEqual(got, [2], 'the other view still works; the closed one sent nothing');
    }
  });

  withPair('a queue group gets each message once, at one member; plain subscribers still get every one', async ({ bus, peer }) => {
    const onBus: number[] = [];
    const onPeer: number[] = [];
    const everyone: number[] = [];
    bus.subscribe('work.*', (m) => onBus.push(m.data as number), { queue: 'workers' });
    peer.subscribe('work.*', (m) => onPeer.push(m.data as number), { queue: 'workers' });
    bus.subscribe('work.>', (m) => everyone.push(m.data as number));
    await barrier(bus, peer, 'sync.q1');
    await barrier(peer, peer, 'sync.q2');
    const sent = Array.from({ length: 20 }, (_, i) => i);
    for (const n of sent) peer.publish(`work.${n % 3}`, n);
    await barrier(bus, peer, 'sync.q3');
    await barrier(peer, peer, 'sync.q4');
    assert.deepEqual([...onBus, ...onPeer].sort((a, b) => a - b), sent, 'each message reached exactly one member');
    // NATS picks a member at random: both staying idle over 20 messages has odds of 2 in a million.
    assert.ok(onBus.length > 0 && onPeer.length > 0, `work is shared (${onBus.length} / ${onPeer.length})`);
    assert.deepEqual(everyone, sent, 'a plain subscriber sees every message, in order');
  });

  withPair('responders sharing a queue group split the requests; each request is answered once', async ({ bus, peer }) => {
    const answeredBy: string[] = [];
    bus.handle('job.run', async (d) => (answeredBy.push('bus'), { n: d, by: 'bus' }), { queue: 'runners' });
    peer.handle('job.run', async (d) => (answeredBy.push('peer'), { n: d, by: 'peer' }), { queue: 'runners' });
    await barrier(bus, peer, 'sync.w1');
    await barrier(peer, bus, 'sync.w2');
    const replies = await Promise.all(Array.from({ length: 20 }, (_, n) => (n % 2 ? bus : peer).request<{ n: number; by: string }>('job.run', n)));
    assert.deepEqual(replies.map((r) => r.n), Array.from({ length: 20 }, (_, n) => n));
    assert.equal(answeredBy.length, 20, 'no request was answered twice');
    assert.ok(answeredBy.includes('bus') && answeredBy.includes('peer'), `requests are spread (${answeredBy.join(',')})`);
  });

  withPair('messages and requests carry their sender', async ({ bus, peer, senders }) => {
    const expected = senders ?? { bus: null, peer: null };
    const seen: Array<string | null> = [];
    bus.subscribe('who.said', (m) => seen.push(m.sender));
    bus.handle('who.asks', async (_d, meta) => ({ sender: meta.sender }));
    peer.handle('who.asks.back', async (_d, meta) => ({ sender: meta.sender }));
    await barrier(bus, peer, 'sync.s1');
    await barrier(peer, bus, 'sync.s2');
    peer.publish('who.said', 'hello');
    await barrier(bus, peer, 'sync.s3');
    assert.deepEqual(seen, [expected.peer]);
    assert.deepEqual(await peer.request('who.asks', null), { sender: expected.peer });
    assert.deepEqual(await bus.request('who.asks.back', null), { sender: expected.bus });
  });

  withPair('onStatus: only a networked backend reports its link going and coming back, and then works again', async ({ bus, peer, outage }) => {
    const events: BusStatus[] = [];
    const peerEvents: BusStatus[] = [];
    bus.onStatus((s) => events.push(s));
    const unwatched = peer.onStatus((s) => peerEvents.push(s));
    const got: unknown[] = [];
    bus.subscribe('st.data', (m) => got.push(m.data));
    bus.handle('st.ask', async (d) => ({ d }));
    await barrier(bus, peer, 'sync.o1');
    if (outage === undefined) {
      peer.publish('st.data', 1);
      assert.deepEqual(await peer.request('st.ask', 1), { d: 1 });
      await barrier(bus, peer, 'sync.o2');
      assert.deepEqual(got, [1]);
      assert.deepEqual(events, [], 'an in-process backend never reports a link');
      return;
    }
    unwatched.unsubscribe();
    const until = async (list: BusStatus[], status: BusStatus) => {
      const deadline = Date.now() + 60_000;
      while (!list.includes(status)) {
        if (Date.now() > deadline) throw new Error(`no '${status}' within 60 s (got ${list.join(', ') || 'nothing'})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await outage.stop();
    await until(events, 'disconnected');
    await outage.start();
    await until(events, 'reconnected');
    assert.deepEqual(events, ['disconnected', 'reconnected']);
    assert.deepEqual(peerEvents, [], 'an unsubscribed listener hears nothing');
    // The subscription and the responder made before the outage work again, without a new bus.
    await barrier(bus, peer, 'sync.o3');
    peer.publish('st.data', 2);
    await barrier(bus, peer, 'sync.o4');
    assert.ok(got.includes(2), 'a subscription from before the outage receives again');
    assert.deepEqual(await peer.request('st.ask', 2), { d: 2 });
  });
}
