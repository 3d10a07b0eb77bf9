// What reaches the app through the router, tried with raw sockets: forwarding headers, Host, request targets,
// smuggling attempts, oversized heads and upgrades the app refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { listen, rawExchange, startRouter, table, up, upstream, waitFor } from './testing.ts';

/** An upstream that answers with the headers and URL it saw, as JSON. */
async function mirror(t: Parameters<typeof upstream>[0]) {
  const seen: { url: string; headers: IncomingHttpHeaders; raw: string[] }[] = [];
  const u = await upstream(t, (req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers, raw: req.rawHeaders });
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ url: req.url, host: req.headers.host })));
  });
  return { port: u.port, seen };
}

test('a client cannot strip Host or the X-Forwarded-* headers through Connection', async (t) => {
  const m = await mirror(t);
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', m.port)] }));
  const r = await rawExchange(
    router.port,
    'GET /x HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close, x-forwarded-for, x-forwarded-proto, x-forwarded-host, host\r\n\r\n',
  );
  assert.equal(r.status, 200);
  const seen = m.seen[0];
  assert.equal(seen.headers.host, 'a.test');
  assert.equal(seen.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-host'], 'a.test');
});

test('two Host headers are refused with 400; an absolute-form target routes by its own authority', async (t) => {
  const a = await mirror(t);
  const b = await mirror(t);
  const router = await startRouter(t, table(1, { 'a.test': 'a', 'b.test': 'b' }, { a: [up('ia', a.port)], b: [up('ib', b.port)] }));
  const two = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n');
  assert.equal(two.status, 400);
  assert.match(two.text, /more than one Host header/);
  assert.equal(a.seen.length + b.seen.length, 0);

  const abs = await rawExchange(router.port, 'GET http://b.test/p?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
  assert.equal(abs.status, 200);
  assert.equal(a.seen.length, 0, 'not routed by the Host header');
  assert.equal(b.seen[0].url, '/p?q=1', 'sent upstream in origin form');
  assert.equal(b.seen[0].headers.host, 'b.test', 'the authority replaces Host');

  const bad = await rawExchange(router.port, 'GET ftp://b.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
  assert.equal(bad.status, 400);
  assert.equal(a.seen.length + b.seen.length, 1);
});

test('smuggling attempts and oversized heads are refused before anything reaches the app', async (t) => {
  const m = await mirror(t);
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', m.port)] }));
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n';
  const attempts: Record<string, string> = {
    'CL and TE': `POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'obfuscated TE': `POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'TE list not ending in chunked': `POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
    'duplicate CL': `POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n${smuggled}`,
    'bare LF': `POST / HTTP/1.1\nHost: a.test\nContent-Length: 0\n\n${smuggled}`,
    'header folding': `POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled}`,
    'space before colon': `POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled}`,
  };
  for (const [name, bytes] of Object.entries(attempts)) {
    const r = await rawExchange(router.port, bytes);
    assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.text.slice(0, 80))}`);
    assert.ok(r.closed, `${name}: the connection is closed`);
  }
  assert.deepEqual(m.seen.map((s) => s.url), [], 'nothing reached the app');

  const huge = await rawExchange(router.port, `GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
  assert.equal(huge.status, 431);
  assert.equal(m.seen.length, 0);
});

test('an upgrade the app refuses is relayed as an ordinary response and no tunnel stays open', async (t) => {
  let upstreamSockets = 0;
  const server = createServer((req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'x-app': 'refused' });
    res.end('no websockets here');
  });
  server.on('connection', (s) => {
    upstreamSockets++;
    s.on('close', () => upstreamSockets--);
  });
  const port = await listen(server);
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const router = await startRouter(t, table(1, { 'ws.test': 's' }, { s: [up('i', port)] }));
  const r = await rawExchange(
    router.port,
    'GET /socket HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  assert.equal(r.status, 403);
  assert.ok(r.closed, 'the router closes the client connection after the answer');
  assert.match(r.text, /x-app: refused/i);
  assert.match(r.text, /connection: close/i);
  assert.match(r.text, /no websockets here$/);
  assert.doesNotMatch(r.text, /transfer-encoding/i);
  await waitFor(() => upstreamSockets === 0, 'the upstream connection to close');
  assert.equal(router.inflight(['i']).counts.i, 0);
  assert.deepEqual(router.stats().services.s.websockets, { opened: 0, active: 0 });
  assert.equal(router.stats().services.s.status['4xx'], 1);
});

test('X-Request-Id: the app gets one and the client gets the same back; a sane client id is kept, a bad one replaced', async (t) => {
  const m = await mirror(t);
  const router = await startRouter(t, table(1, { 'a.test': 's' }, { s: [up('i', m.port)] }));
  const header = (text: string) => /\r\nx-request-id: ([^\r]*)\r\n/i.exec(text)?.[1];

  const fresh = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
  assert.equal(fresh.status, 200);
  const id = m.seen[0].headers['x-request-id'];
  assert.ok(typeof id === 'string' && id.length > 0, 'the app sees an id');
  assert.equal(header(fresh.text), id, 'the client gets the id the app saw');

  const kept = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: client-abc.1\r\nConnection: close\r\n\r\n');
  assert.equal(m.seen[1].headers['x-request-id'], 'client-abc.1');
  assert.equal(header(kept.text), 'client-abc.1');

  const bad = `GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: ${'z'.repeat(300)}\r\nConnection: close\r\n\r\n`;
  const replaced = await rawExchange(router.port, bad);
  const replacedId = m.seen[2].headers['x-request-id'];
  assert.ok(typeof replacedId === 'string' && replacedId.length <= 128 && replacedId !== id);
  assert.equal(header(replaced.text), replacedId);

  const missing = await rawExchange(router.port, 'GET / HTTP/1.1\r\nHost: nowhere.test\r\nX-Request-Id: lost-1\r\nConnection: close\r\n\r\n');
  assert.equal(missing.status, 404);
  assert.equal(header(missing.text), 'lost-1', "the router's own answers carry the id too");
});
