// Unit tests of the route table: host normalisation, exact and one-level wildcard lookup, table ordering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_TIMEOUTS, normalizeHost, RouteTable } from './route-table.ts';
import type { RouteTableUpdate } from '../core/messages.ts';

const update = (over: Partial<RouteTableUpdate> = {}): RouteTableUpdate => ({
  incarnation: 'inc-a',
  seq: 1,
  hosts: { 'app.example.com': 'w/p/web', '*.apps.example.com': 'w/p/wild', 'Empty.Example.com': 'w/p/empty', 'ghost.example.com': 'w/p/none' },
  services: {
    'w/p/web': { key: 'w/p/web', upstreams: [{ instanceId: 'i1', host: '127.0.0.1', port: 1001 }] },
    'w/p/wild': { key: 'w/p/wild', upstreams: [{ instanceId: 'i2', host: '127.0.0.1', port: 1002 }] },
    'w/p/empty': { key: 'w/p/empty', upstreams: [] },
  },
  ...over,
});

test('normalizeHost lower-cases and strips the port and a trailing dot', () => {
  assert.equal(normalizeHost('App.Example.COM:8080'), 'app.example.com');
  assert.equal(normalizeHost('app.example.com.'), 'app.example.com');
  assert.equal(normalizeHost('app.example.com.:80'), 'app.example.com');
  assert.equal(normalizeHost('[::1]:8080'), '[::1]');
  assert.equal(normalizeHost('[::1]'), '[::1]');
  assert.equal(normalizeHost('localhost'), 'localhost');
  assert.equal(normalizeHost(''), '');
});

test('exact names win; wildcards match exactly one level', () => {
  const t = new RouteTable(update({ hosts: { ...update().hosts, 'x.apps.example.com': 'w/p/web' } }));
  assert.equal(t.lookup('app.example.com')?.key, 'w/p/web');
  assert.equal(t.lookup('x.apps.example.com')?.key, 'w/p/web', 'exact beats wildcard');
  assert.equal(t.lookup('y.apps.example.com')?.key, 'w/p/wild');
  assert.equal(t.lookup('a.y.apps.example.com'), undefined, 'two levels below the wildcard do not match');
  assert.equal(t.lookup('apps.example.com'), undefined, 'the wildcard does not match its own suffix');
  assert.equal(t.lookup('other.example.com'), undefined);
  assert.equal(t.lookup('empty.example.com')?.upstreams.length, 0, 'table hosts are normalised too');
  const ghost = t.lookup('ghost.example.com');
  assert.deepEqual({ key: ghost?.key, upstreams: ghost?.upstreams, timeouts: ghost?.timeouts }, { key: 'w/p/none', upstreams: [], timeouts: DEFAULT_TIMEOUTS }, 'a host of an undescribed service is known, with nothing running');
  assert.deepEqual([...t.upstreams.keys()].sort(), ['i1', 'i2']);
});

test('accepts a new incarnation or a greater seq, never an older or equal seq', () => {
  assert.equal(RouteTable.empty().accepts({ incarnation: 'x', seq: 0 }), true);
  const t = new RouteTable(update({ seq: 5 }));
  assert.equal(t.accepts({ incarnation: 'inc-a', seq: 6 }), true);
  assert.equal(t.accepts({ incarnation: 'inc-a', seq: 5 }), false);
  assert.equal(t.accepts({ incarnation: 'inc-a', seq: 4 }), false);
  assert.equal(t.accepts({ incarnation: 'inc-b', seq: 0 }), true);
});

test('a malformed table is refused with a clear error', () => {
  assert.throws(() => new RouteTable({ ...update(), seq: 'x' as unknown as number }), /seq/);
  assert.throws(
    () => new RouteTable(update({ services: { 'w/p/web': { key: 'w/p/web', upstreams: [{ instanceId: 'i', host: 'h', port: 0 }] } } })),
    (err: Error & { code?: string }) => err.code === 'invalid_request' && /malformed upstream/.test(err.message),
  );
});

test('upstreams carry their version and weight; a table from before them reads with weight 1 and no version', () => {
  const t = new RouteTable(update({
    services: {
      ...update().services,
      'w/p/web': { key: 'w/p/web', upstreams: [{ instanceId: 'i1', host: '127.0.0.1', port: 1001, version: { id: 'v-7', number: 7 }, weight: 3 }] },
    },
  }));
  assert.deepEqual(t.lookup('app.example.com')?.upstreams, [{ instanceId: 'i1', host: '127.0.0.1', port: 1001, weight: 3, version: { id: 'v-7', number: 7 } }]);
  // The fixture's wildcard service is written as tables were before weights and versions existed.
  assert.deepEqual(t.lookup('x.apps.example.com')?.upstreams, [{ instanceId: 'i2', host: '127.0.0.1', port: 1002, weight: 1 }]);
});

test('a malformed weight or version refuses the whole table', () => {
  for (const bad of [{ weight: -1 }, { weight: 'heavy' }, { weight: Number.NaN }, { version: { id: 'v' } }, { version: 'v-1' }]) {
    const services = { 'w/p/web': { key: 'w/p/web', upstreams: [{ instanceId: 'i1', host: '127.0.0.1', port: 1001, ...bad }] } };
    assert.throws(() => new RouteTable(update({ services: services as RouteTableUpdate['services'] })), /malformed upstream/, JSON.stringify(bad));
  }
});
