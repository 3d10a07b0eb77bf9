import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus, subjectMatches } from './memory.ts';
import { EnjinError } from '../core/errors.ts';

test('subject wildcards follow NATS rules', () => {
  const m = (p: string, s: string) => subjectMatches(p.split('.'), s.split('.'));
  assert.equal(m('a.b', 'a.b'), true);
  assert.equal(m('a.*', 'a.b'), true);
  assert.equal(m('a.*', 'a.b.c'), false);
  assert.equal(m('a.>', 'a.b.c'), true);
  assert.equal(m('a.>', 'a'), false);
  assert.equal(m('a.*.c', 'a.x.c'), true);
  assert.equal(m('a.b', 'a.b.c'), false);
});

test('publish delivers a copy to every matching subscriber, asynchronously', async () => {
  const bus = new MemoryBus();
  const got: unknown[] = [];
  bus.subscribe('x.*', (m) => got.push(m.data));
  bus.subscribe('y', () => got.push('wrong'));
  const payload = { n: 1 };
  bus.publish('x.1', payload);
  assert.equal(got.length, 0, 'delivery is not synchronous');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(got, [{ n: 1 }]);
  assert.notEqual(got[0], payload, 'subscribers get a copy');
});

test('request/reply carries answers and coded errors, and times out', async () => {
  const bus = new MemoryBus();
  bus.handle('svc', async (d) => {
    const x = (d as { x: number }).x;
    if (x < 0) throw new EnjinError('negative', 'x must be positive', { status: 422 });
    if (x === 0) await new Promise((r) => setTimeout(r, 200));
    return { y: x * 2 };
  });
  assert.deepEqual(await bus.request('svc', { x: 2 }), { y: 4 });
  await assert.rejects(bus.request('svc', { x: -1 }), (e: EnjinError) => e.code === 'negative' && e.status === 422);
  await assert.rejects(bus.request('svc', { x: 0 }, { timeoutMs: 20 }), (e: EnjinError) => e.code === 'bus_timeout');
  await assert.rejects(bus.request('nobody', {}), (e: EnjinError) => e.code === 'bus_no_responder');
});
