// Hostile clients against the router on real sockets: slow request bodies, slow headers, floods of idle connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { get, rawConnect, rawExchange, startRouter, table, up, upstream, waitFor } from './testing.ts';

const SLOW_CLIENTS = 200; // more than an upstream pool's 128 connections: enough to starve it if they held them

test('slow request bodies neither hold upstream connections nor starve other clients; they get 408', async (t) => {
  let upstreamBodies = 0;
  const u = await upstream(t, (req, res) => {
    if (req.method === 'POST') upstreamBodies++;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const router = await startRouter(t, table(1, { 'slow.test': 's' }, { s: [up('i', u.port)] }), { bodyGraceMs: 3_000, bodyMinBytesPerSecond: 1024 });

  const slow: Socket[] = [];
  const answers: string[] = [];
  t.after(() => slow.forEach((s) => s.destroy()));
  for (let i = 0; i < SLOW_CLIENTS; i++) {
    const s = await rawConnect(router.port);
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => {});
    s.on('close', () => answers.push(Buffer.concat(got).toString('latin1')));
    s.write('POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 1000\r\n\r\nx');
    slow.push(s);
  }
  // One byte a second from each: far below any sane rate, and never finishing.
  const drip = setInterval(() => {
    for (const s of slow) if (!s.destroyed) s.write('x');
  }, 1_000);
  t.after(() => clearInterval(drip));

  // Another client (another address) is served at once, again and again, while the slow ones drip.
  for (let i = 0; i < 20; i++) {
    const r = await get(router.port, 'slow.test', { localAddress: '127.0.0.2', timeoutMs: 10_000 });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
  }
  // Every slow client is answered 408 and disconnected; none of their bodies reached the app.
  await waitFor(() => answers.length === SLOW_CLIENTS, 'every slow client to be disconnected', 60_000);
  clearInterval(drip);
  for (const a of answers) assert.match(a, /^HTTP\/1\.1 408 /);
  assert.match(answers[0], /connection: close/i);
  assert.equal(upstreamBodies, 0);
  // A client that sends its body promptly is still served.
  const ok = await rawExchange(router.port, 'POST / HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
  assert.equal(ok.status, 200);
});

test('slowloris: 4,000 connections dripping their headers are closed with 408 while others are served', { timeout: 180_000 }, async (t) => {
  const u = await upstream(t, (req, res) => {
    req.resume();
    res.end('ok');
  });
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', u.port)] }), { headersTimeoutMs: 3_000 });
  const sockets: Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  let closed = 0;
  let answered408 = 0;
  for (let i = 0; i < 4_000; i++) {
    const s = await rawConnect(router.port);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      if (c.toString('latin1').startsWith('HTTP/1.1 408')) answered408++;
    });
    s.on('close', () => closed++);
    s.write('GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ');
    sockets.push(s);
  }
  const drip = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write('a');
  }, 1_000);
  t.after(() => clearInterval(drip));
  for (let i = 0; i < 10; i++) {
    const r = await get(router.port, 'a.test', { localAddress: '127.0.0.2', timeoutMs: 20_000 });
    assert.equal(r.status, 200);
  }
  await waitFor(() => closed === sockets.length, 'every dripping connection to be closed', 120_000);
  assert.ok(answered408 > 0, 'they are told 408');
});

test('idle connections are closed: before any request, and between keep-alive requests', async (t) => {
  const u = await upstream(t, (req, res) => {
    req.resume();
    res.end('ok');
  });
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', u.port)] }), { headersTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000 });
  const silent = await rawExchange(router.port, '', { limitMs: 30_000 });
  assert.ok(silent.closed, 'a connection that never says anything is closed');
  const kept = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n', { limitMs: 30_000 });
  assert.equal(kept.status, 200);
  assert.ok(kept.closed, 'an idle keep-alive connection is closed');
});

test('the listener takes at most maxConnections; one client address at most maxInflightPerClient requests upstream', async (t) => {
  const held: (() => void)[] = [];
  const u = await upstream(t, (req, res) => {
    req.resume();
    if (req.url === '/hold') held.push(() => res.end('held'));
    else res.end('ok');
  });
  t.after(() => held.forEach((f) => f()));
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', u.port)] }), { maxConnections: 20, maxInflightPerClient: 2 });

  const holding = [get(router.port, 'a.test', { path: '/hold' }), get(router.port, 'a.test', { path: '/hold' })];
  await waitFor(() => held.length === 2, 'two held requests');
  const third = await get(router.port, 'a.test');
  assert.equal(third.status, 429, 'a third request from the same address waits its turn');
  assert.match(third.body, /Too many requests from your address/);
  assert.equal((await get(router.port, 'a.test', { localAddress: '127.0.0.2' })).status, 200, 'another address is served');
  held.splice(0).forEach((f) => f());
  for (const r of await Promise.all(holding)) assert.equal(r.status, 200);
  assert.equal((await get(router.port, 'a.test')).status, 200, 'the address may send again once they finished');

  const idle: Socket[] = [];
  t.after(() => idle.forEach((s) => s.destroy()));
  let closed = 0;
  for (let i = 0; i < 30; i++) {
    const s = await rawConnect(router.port);
    s.on('error', () => {});
    s.on('close', () => closed++);
    s.resume(); // a paused socket may never see the router's FIN
    idle.push(s);
  }
  await waitFor(() => router.droppedConnections === 10 && closed === 10, 'the 10 connections beyond the cap to be closed');
  await assert.rejects(get(router.port, 'a.test', { localAddress: '127.0.0.2' }), 'a full listener takes no new connection');
  idle.slice(0, 5).forEach((s) => s.destroy());
  await waitFor(async () => (await get(router.port, 'a.test', { localAddress: '127.0.0.2' }).catch(() => ({ status: 0 }))).status === 200, 'a slot to free up');
});
