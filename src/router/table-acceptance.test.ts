// A router never swaps a populated route table for an empty one from a new controller run, unless that run says the
// emptiness is meant (it has routed something itself, or an operator allowed it). Real router, real publisher.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import type { RouteTableUpdate } from '../core/messages.ts';
import { RoutePublisher } from '../controller/routes/publisher.ts';
import { Router } from './router.ts';
import { judgeTable } from './table-acceptance.ts';
import { get, up, upstream, waitFor } from './testing.ts';

type Table = Pick<RouteTableUpdate, 'hosts' | 'services'>;
const EMPTY: Table = { hosts: {}, services: {} };

test('judgeTable: only an empty table from a new incarnation over a populated one is held, and allowEmpty lets it in', () => {
  const populated = { incarnation: 'a', hosts: { 'x.test': 'k' } };
  assert.equal(judgeTable(populated, { incarnation: 'b', hosts: {} }), 'hold');
  assert.equal(judgeTable(populated, { incarnation: 'b', hosts: {}, allowEmpty: true }), 'apply');
  assert.equal(judgeTable(populated, { incarnation: 'a', hosts: {} }), 'apply', 'the same run emptying its table decided so');
  assert.equal(judgeTable(populated, { incarnation: 'b', hosts: { 'y.test': 'k' } }), 'apply');
  assert.equal(judgeTable({ incarnation: 'a', hosts: {} }, { incarnation: 'b', hosts: {} }), 'apply', 'nothing to lose');
});

test('a router keeps routing through an empty table from a new controller run, until that run allows it', async (t) => {
  const site = await upstream(t, (req, res) => {
    req.resume();
    res.end('still here');
  });
  const populated: Table = { hosts: { 'shop.test': 'default/shop/web' }, services: { 'default/shop/web': { key: 'default/shop/web', upstreams: [up('inst_1', site.port)] } } };
  const bus = new MemoryBus();
  const dataDir = await mkdtemp(join(tmpdir(), 'enjin-held-'));
  const publishers: RoutePublisher[] = [];
  const router = new Router({ routerId: 'r1', bus, dataDir, port: 0, host: '127.0.0.1' });
  t.after(async () => {
    for (const p of publishers) p.stop();
    await router.stop();
    await bus.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const run = (build: () => Table): RoutePublisher => {
    const p = new RoutePublisher(bus, build);
    publishers.push(p);
    p.start();
    return p;
  };

  const first = run(() => populated);
  await router.start();
  await waitFor(() => router.inflight([]).incarnation === first.table.incarnation, 'the first run\'s table');
  assert.equal((await get(router.port, 'shop.test')).body, 'still here');
  first.stop();

  // A controller on an empty store: its first table is empty, and it never routed anything.
  const amnesiac = run(() => EMPTY);
  assert.equal(amnesiac.table.allowEmpty, undefined);
  await waitFor(() => router.inflight([]).held === amnesiac.table.incarnation, 'the router to hold the empty table');
  assert.equal(router.stats().held, amnesiac.table.incarnation);
  assert.equal(router.inflight([]).incarnation, first.table.incarnation, 'the populated table stays');
  assert.equal((await get(router.port, 'shop.test')).body, 'still here');
  assert.equal(JSON.parse(await readFile(join(dataDir, 'routes.json'), 'utf8')).incarnation, first.table.incarnation, 'and stays saved');

  // The operator says the cluster really routes nothing now.
  amnesiac.allowEmptyOnce();
  assert.equal(amnesiac.table.allowEmpty, true);
  await waitFor(() => router.inflight([]).incarnation === amnesiac.table.incarnation, 'the router to take the allowed empty table');
  assert.equal(router.inflight([]).held, undefined);
  assert.equal((await get(router.port, 'shop.test')).status, 404);
  amnesiac.stop();

  // A run that has routed something may empty its table later (its last project destroyed): that is a decision.
  let now = populated;
  const third = run(() => now);
  await waitFor(() => router.inflight([]).incarnation === third.table.incarnation, 'the third run\'s table');
  assert.equal((await get(router.port, 'shop.test')).body, 'still here');
  now = EMPTY;
  const seq = third.refreshNow();
  assert.equal(third.table.allowEmpty, true);
  await waitFor(() => router.inflight([]).seq === seq, 'the emptied table');
  assert.equal((await get(router.port, 'shop.test')).status, 404);

  // And a new run whose first table is empty over an empty router changes nothing worth holding.
  third.stop();
  const fourth = run(() => EMPTY);
  await waitFor(() => router.inflight([]).incarnation === fourth.table.incarnation, 'an empty table over an empty one');
  assert.equal(router.inflight([]).held, undefined);
});
