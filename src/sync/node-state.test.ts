import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus } from '../bus/memory.ts';
import { NodeStateReceiver } from './node-state.ts';
import { subjects, type NodeStateUpdate } from '../core/messages.ts';

const node = { nodeId: 'n1', name: 'n1', address: '127.0.0.1', labels: {} };
const upd = (incarnation: string, seq: number): NodeStateUpdate => ({ node, incarnation, seq, instances: [], removed: [] });

test('seq 0 replaces, seq n+1 applies, a gap or a new incarnation asks for a resync', async () => {
  const bus = new MemoryBus();
  const seen: string[] = [];
  let resyncs = 0;
  bus.subscribe(subjects.resync('n1'), () => resyncs++);
  const r = new NodeStateReceiver(bus, { full: (u) => seen.push(`full ${u.incarnation}`), delta: (u) => seen.push(`delta ${u.seq}`) });
  r.receive(upd('a', 1)); // never saw seq 0
  r.receive(upd('a', 0));
  r.receive(upd('a', 1));
  r.receive(upd('a', 1)); // duplicate: ignored
  r.receive(upd('a', 3)); // gap
  r.receive(upd('b', 1)); // unknown incarnation
  r.receive(upd('b', 0));
  r.receive(upd('b', 1));
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(seen, ['full a', 'delta 1', 'full b', 'delta 1']);
  assert.equal(resyncs, 3);
});
