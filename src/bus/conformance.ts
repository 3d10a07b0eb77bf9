// The cases every Bus backend must pass, run by each backend's test file: `bus` and `peer` are two views of one bus
// (the same object for MemoryBus; two clients of one relay, or a client and its parent, across processes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus, BusMessage } from './bus.ts';
import { EnjinError } from '../core/errors.ts';

export interface BusPair {
  bus: Bus;
  peer: Bus;
  close(): Promise<void>;
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
    bus.subscribe('y', () => got.push({ subject: 'wrong', data: null }));
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
    bus.handle('svc', async (d, subject) => {
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
}
