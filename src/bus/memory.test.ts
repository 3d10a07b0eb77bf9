import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBus, subjectMatches } from './memory.ts';
import { busConformance } from './conformance.ts';

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

busConformance('MemoryBus', async () => {
  const bus = new MemoryBus();
  return { bus, peer: bus, close: () => bus.close() };
});
