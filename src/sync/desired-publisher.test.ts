import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type DesiredStateUpdate } from '../core/messages.ts';
import { DesiredStatePublisher } from './desired-publisher.ts';

test('a held node is told nothing (no full state, keepalive or resync answer) until it is released', async () => {
  const bus = new MemoryBus();
  const got: DesiredStateUpdate[] = [];
  bus.subscribe(subjects.desired('n1'), (m) => got.push(m.data as DesiredStateUpdate));
  let held = true;
  const publisher = new DesiredStatePublisher(bus, { desiredFor: () => [], nodeIds: () => ['n1'], keepaliveMs: 20, hold: () => held });
  publisher.start();
  bus.publish(subjects.desiredResync, { nodeId: 'n1' });
  publisher.changed('n1');
  // Several keepalive periods: a full state now would replace what the node keeps before anyone read it.
  await new Promise((r) => setTimeout(r, 120));
  assert.deepEqual(got, []);
  held = false;
  publisher.changed('n1');
  for (let i = 0; i < 100 && !got.length; i++) await new Promise((r) => setTimeout(r, 5));
  const first = got[0] as DesiredStateUpdate | undefined;
  assert.equal(first?.seq, 0, 'released: a full state first');
  assert.equal(first?.incarnation, publisher.incarnation);
  publisher.stop();
  await bus.close();
});
