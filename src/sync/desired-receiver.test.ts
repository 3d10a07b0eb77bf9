// The agent's ordering of desired-state updates, and the publisher's full/delta/keepalive stream, on a faultless bus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../bus/memory.ts';
import { LossyBus } from '../bus/lossy.ts';
import { subjects, type DesiredInstance, type DesiredStateUpdate } from '../core/messages.ts';
import { DesiredStateReceiver } from './desired-receiver.ts';
import { DesiredStatePublisher } from './desired-publisher.ts';

const update = (incarnation: string, seq: number, ids: string[] = [], removed: string[] = []): DesiredStateUpdate => ({
  incarnation, seq, removed,
  instances: ids.map((id) => ({ desired: 'running', spec: { instanceId: id } as DesiredInstance['spec'], version: {} as DesiredInstance['version'] })),
});

const tick = () => new Promise((r) => setImmediate(r));

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('the receiver applies in order, drops duplicates, and asks for a full state at start, on a gap, a new incarnation and a reconnect', async () => {
  const wire = new MemoryBus();
  const bus = new LossyBus(wire, { seed: 1 }); // no faults: only its emitStatus is used
  const asked: string[] = [];
  wire.subscribe(subjects.desiredResync, (m) => asked.push((m.data as { nodeId: string }).nodeId));
  const got: string[] = [];
  const r = new DesiredStateReceiver(bus, 'n1', { full: (u) => got.push(`full ${u.incarnation}`), delta: (u) => got.push(`delta ${u.incarnation}/${u.seq}`) });
  r.start();
  await tick();
  assert.deepEqual(asked, ['n1'], 'asks at start');

  r.receive(update('a', 3));
  await tick();
  assert.equal(asked.length, 2, 'a delta before any full state: ask again');
  r.receive(update('a', 0, ['i1']));
  r.receive(update('a', 1));
  r.receive(update('a', 1));
  r.receive(update('a', 2));
  assert.deepEqual(got, ['full a', 'delta a/1', 'delta a/2']);
  assert.equal(r.counts.duplicates, 1);

  r.receive(update('a', 4));
  await tick();
  assert.equal(asked.length, 3, 'a gap');
  r.receive(update('a', 5));
  assert.equal(got.length, 3, 'nothing applies until a full state');
  r.receive(update('a', 0));
  r.receive(update('b', 1));
  await tick();
  assert.equal(asked.length, 5, 'a new incarnation (and the delta while waiting)');
  r.receive(update('b', 0));
  r.receive(update('b', 1));
  assert.deepEqual(got.slice(3), ['full a', 'full b', 'delta b/1']);

  bus.emitStatus('reconnected');
  await tick();
  assert.equal(asked.length, 6, 'a reconnect');
  r.receive(null as unknown as DesiredStateUpdate);
  assert.equal(r.counts.malformed, 1);
  r.stop();
});

test('the publisher sends a full state first and on request, coalesced deltas after, and keepalives that take a seq', async () => {
  const bus = new MemoryBus();
  const rows = new Map<string, DesiredInstance[]>([['n1', update('x', 0, ['i1']).instances]]);
  const seen: DesiredStateUpdate[] = [];
  bus.subscribe(subjects.desired('n1'), (m) => seen.push(m.data as DesiredStateUpdate));
  const p = new DesiredStatePublisher(bus, { desiredFor: (n) => rows.get(n) ?? [], nodeIds: () => rows.keys(), keepaliveMs: 60_000 });
  p.start();
  await until('the first full state', () => seen.length === 1);
  assert.deepEqual(seen[0], { incarnation: p.incarnation, seq: 0, instances: rows.get('n1'), removed: [] });

  // Three changes in one turn: one delta, with only what changed.
  rows.set('n1', update('x', 0, ['i1', 'i2', 'i3']).instances);
  p.changed('n1');
  p.changed('n1');
  p.changed('n1');
  await until('one delta', () => seen.length === 2);
  await tick();
  assert.equal(seen.length, 2);
  assert.deepEqual({ seq: seen[1].seq, ids: seen[1].instances.map((d) => d.spec.instanceId), removed: seen[1].removed }, { seq: 1, ids: ['i2', 'i3'], removed: [] });

  rows.set('n1', update('x', 0, ['i2', 'i3']).instances);
  p.changed('n1');
  await until('the removal', () => seen.length === 3);
  assert.deepEqual({ seq: seen[2].seq, ids: seen[2].instances, removed: seen[2].removed }, { seq: 2, ids: [], removed: ['i1'] });

  p.changed('n1'); // nothing actually changed: nothing sent
  bus.publish(subjects.desiredResync, { nodeId: 'n1' });
  await until('a full state on request', () => seen.length === 4);
  assert.deepEqual({ seq: seen[3].seq, ids: seen[3].instances.map((d) => d.spec.instanceId) }, { seq: 0, ids: ['i2', 'i3'] });
  p.stop();

  const fast = new DesiredStatePublisher(bus, { desiredFor: (n) => rows.get(n) ?? [], nodeIds: () => rows.keys(), keepaliveMs: 20 });
  fast.start();
  await until('two keepalives', () => seen.filter((u) => u.incarnation === fast.incarnation && u.seq > 0).length >= 2);
  const keepalives = seen.filter((u) => u.incarnation === fast.incarnation);
  assert.notEqual(fast.incarnation, p.incarnation);
  assert.deepEqual(keepalives.slice(0, 3).map((u) => [u.seq, u.instances.length, u.removed.length]), [[0, 2, 0], [1, 0, 0], [2, 0, 0]]);
  fast.stop();
});
