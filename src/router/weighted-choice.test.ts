// The router's weighted choice: deterministic, proportional to weights at every prefix, fair among equals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteTable } from './route-table.ts';
import { pickUpstream, UpstreamState } from './upstreams.ts';
import { routedUpstream, WeightedChoice } from './weighted-choice.ts';

const up = (id: string, weight?: number) => routedUpstream({ instanceId: id, host: '127.0.0.1', port: 1000 + id.charCodeAt(0), ...(weight === undefined ? {} : { weight }) });
const take = (choice: WeightedChoice, n: number, eligible: Parameters<WeightedChoice['next']>[0] = () => true) =>
  Array.from({ length: n }, () => choice.next(eligible)?.instanceId ?? null);

test('equal weights take turns in order', () => {
  const choice = new WeightedChoice([up('a'), up('b'), up('c')]);
  assert.deepEqual(take(choice, 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a']);
});

test('weights 2:1 interleave (a a b never becomes a burst) and hold the ratio at every full round', () => {
  const choice = new WeightedChoice([up('a', 2), up('b', 1)]);
  const seq = take(choice, 9);
  assert.deepEqual(seq, ['a', 'b', 'a', 'a', 'b', 'a', 'a', 'b', 'a']);
  const heavy = new WeightedChoice([up('a', 5), up('b', 1), up('c', 1)]);
  const counts = new Map<string, number>();
  for (const id of take(heavy, 70)) counts.set(id!, (counts.get(id!) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(counts), { a: 50, b: 10, c: 10 });
  // Smooth: each round of 7 is a a b a c a a (nginx's sequence), never a burst of five a's.
  assert.equal(take(new WeightedChoice([up('a', 5), up('b', 1), up('c', 1)]), 14).join(''), 'aabacaaaabacaa');
});

test('the same table gives the same sequence: the choice is deterministic', () => {
  const build = () => new WeightedChoice([up('a', 3), up('b', 2), up('c', 1)]);
  assert.deepEqual(take(build(), 30), take(build(), 30));
});

test('weight 0 takes nothing while another can; all weighing 0 are equals; none eligible gives null', () => {
  assert.deepEqual(take(new WeightedChoice([up('a', 0), up('b', 1)]), 4), ['b', 'b', 'b', 'b']);
  assert.deepEqual(take(new WeightedChoice([up('a', 0), up('b', 0)]), 4), ['a', 'b', 'a', 'b']);
  assert.deepEqual(take(new WeightedChoice([up('a'), up('b')]), 2, () => false), [null, null]);
});

test('an upstream skipped for a while does not hoard its turns when it is back', () => {
  const a = up('a');
  const choice = new WeightedChoice([a, up('b')]);
  assert.deepEqual(take(choice, 4, (u) => u !== a), ['b', 'b', 'b', 'b']);
  assert.deepEqual(take(choice, 4), ['a', 'b', 'a', 'b']);
});

test('pickUpstream follows the weights, skips an upstream this request tried and one refusing connections', () => {
  const table = new RouteTable({
    incarnation: 'i', seq: 1, hosts: { 'app.test': 'k' },
    services: { k: { key: 'k', upstreams: [{ instanceId: 'a', host: '127.0.0.1', port: 1001, weight: 2 }, { instanceId: 'b', host: '127.0.0.1', port: 1002 }] } },
  });
  const target = table.lookup('app.test')!;
  const states = new Map<string, UpstreamState>();
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(() => pickUpstream(target, states, 0, null, null).instanceId), ['a', 'b', 'a', 'a', 'b', 'a']);
  assert.equal(pickUpstream(target, states, 0, 'a', null).instanceId, 'b', 'a retry goes elsewhere');
  const refusing = new UpstreamState(target.upstreams[0], 1000);
  refusing.markFailed(100);
  states.set('a', refusing);
  assert.deepEqual([0, 1, 2].map(() => pickUpstream(target, states, 200, null, null).instanceId), ['b', 'b', 'b']);
  assert.equal(pickUpstream(target, states, 200, 'b', null).instanceId, 'a', 'a refusing upstream still serves when nothing else is left');
});
