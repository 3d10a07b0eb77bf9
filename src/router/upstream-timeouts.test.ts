// Upstream timeouts per service: an app that never answers gets a 504 naming the service; one that stalls mid-body is cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { rawExchange, startRouter, table, up, upstream } from './testing.ts';

test('an app that never answers gets a plain 504 naming the service after its header timeout', async (t) => {
  const held: ServerResponse[] = [];
  const u = await upstream(t, (req, res) => {
    req.resume();
    held.push(res); // never answered
  });
  const router = await startRouter(
    t,
    table(1, { 'mute.test': 'default/shop/web' }, { 'default/shop/web': [up('i', u.port)] }, { 'default/shop/web': { connectMs: 5_000, headerMs: 1_000, idleMs: 300_000 } }),
  );
  const r = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: mute.test\r\nConnection: close\r\n\r\n', { limitMs: 30_000 });
  assert.equal(r.status, 504);
  assert.match(r.text, /content-type: text\/plain/i);
  assert.match(r.text, /Service web \(project shop\) at mute\.test did not answer within 1 s/);
  assert.equal(held.length, 1, 'a GET that timed out is not sent again');
});

test('an app that stalls mid-body is cut after its idle timeout', async (t) => {
  const u = await upstream(t, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-length': 100 });
    res.write('first part'); // and nothing more
  });
  const router = await startRouter(t, table(1, { 'stall.test': 's' }, { s: [up('i', u.port)] }, { s: { connectMs: 5_000, headerMs: 60_000, idleMs: 1_000 } }));
  const r = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: stall.test\r\n\r\n', { limitMs: 30_000 });
  assert.equal(r.status, 200);
  assert.ok(r.closed, 'the client connection is closed: the only signal left once headers went out');
  assert.match(r.text, /first part$/);
});
