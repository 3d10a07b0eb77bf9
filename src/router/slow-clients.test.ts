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
