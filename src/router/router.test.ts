// End-to-end tests of the router: real sockets on 127.0.0.1, real upstream servers, the in-memory bus.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type RouteTableUpdate, type RouterInflightReply, type RouterStatsReply, type Upstream } from '../core/messages.ts';
import { Router } from './router.ts';

// ---- helpers ----------------------------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** An upstream HTTP server; closed when the test ends. */
async function upstream(t: TestContext, handler: Handler): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  const port = await listen(server);
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port };
}

/** An upstream that answers with its own name, so tests can see where a request went. */
const named = (t: TestContext, name: string) =>
  upstream(t, (req, res) => {
    req.resume();
    res.end(name);
  });

/** A port nothing listens on: listen, note it, close. */
async function deadPort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const up = (instanceId: string, port: number): Upstream => ({ instanceId, host: '127.0.0.1', port });

function table(seq: number, hosts: Record<string, string>, services: Record<string, Upstream[]>, incarnation = 'inc-1'): RouteTableUpdate {
  return {
    incarnation,
    seq,
    hosts,
    services: Object.fromEntries(Object.entries(services).map(([key, upstreams]) => [key, { key, upstreams }])),
  };
}

interface Started {
  router: Router;
  bus: MemoryBus;
  dataDir: string;
}

/** A router whose bus answers the table request with `initial` (or nobody answers, if null). */
async function startRouter(t: TestContext, initial: RouteTableUpdate | null, opts: { dataDir?: string; routerId?: string } = {}): Promise<Started> {
  const bus = new MemoryBus();
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'enjin-router-')));
  if (initial !== null) bus.handle(subjects.routesRequest, async () => initial);
  const router = new Router({ routerId: opts.routerId ?? 'r1', bus, dataDir, port: 0, host: '127.0.0.1' });
  await router.start();
  // One hook, in this order: the router may still be writing routes.json, so it stops before its directory goes.
  t.after(async () => {
    await router.stop();
    await bus.close();
    if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  if (initial !== null) await waitFor(() => router.stats() !== null && rpcSeq(router) === initial.seq, 'the initial table');
  return { router, bus, dataDir };
}

function rpcSeq(router: Router): number {
  return router.inflight([]).seq;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Reply {
  status: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One HTTP request through the router with a chosen Host header. */
function send(port: number, host: string, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: { host, ...opts.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, statusMessage: res.statusMessage ?? '', headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

// ---- tests ------------------------------------------------------------------------------------------------------

test('routes by exact host, then one-level wildcard; unknown host 404; no instance 503', async (t) => {
  const a = await named(t, 'exact');
  const b = await named(t, 'wild');
  const { router } = await startRouter(
    t,
    table(1, { 'app.example.com': 'w/p/web', '*.apps.example.com': 'w/p/wild', 'idle.example.com': 'w/p/idle' }, {
      'w/p/web': [up('i-a', a.port)],
      'w/p/wild': [up('i-b', b.port)],
      'w/p/idle': [],
    }),
  );
  const p = router.port;
  assert.equal((await send(p, 'app.example.com')).body.toString(), 'exact');
  assert.equal((await send(p, 'APP.Example.com:8080')).body.toString(), 'exact', 'case and port do not matter');
  assert.equal((await send(p, 'x.apps.example.com')).body.toString(), 'wild');

  for (const host of ['a.x.apps.example.com', 'nowhere.example.com']) {
    const r = await send(p, host);
    assert.equal(r.status, 404, host);
    assert.match(r.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(r.body.toString(), /no app is deployed at/i);
  }
  const idle = await send(p, 'idle.example.com');
  assert.equal(idle.status, 503);
  assert.match(idle.body.toString(), /no running instance/);
  assert.equal((await send(p, 'idle.example.com', { method: 'HEAD' })).status, 503);
});

test('spreads requests across upstreams at random', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const { router } = await startRouter(t, table(1, { 'app.test': 's' }, { s: [up('i-a', a.port), up('i-b', b.port)] }));
  const seen = { a: 0, b: 0 };
  for (let i = 0; i < 100; i++) seen[(await send(router.port, 'app.test')).body.toString() as 'a' | 'b']++;
  // The chance that 100 fair coin flips all land one side is 2^-99.
  assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
  assert.equal(seen.a + seen.b, 100);
});

test('streams large bodies both ways without buffering them', async (t) => {
  let firstUpload: () => void = () => {};
  const uploadStarted = new Promise<void>((r) => (firstUpload = r));
  let releaseDownload: () => void = () => {};
  const downloadMayFinish = new Promise<void>((r) => (releaseDownload = r));
  const u = await upstream(t, (req, res) => {
    if (req.url === '/echo') {
      // Echo the upload back as it arrives, hashing it on the way.
      const hash = createHash('sha256');
      let told = false;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.on('data', (c: Buffer) => {
        if (!told) (told = true), firstUpload();
        hash.update(c);
        if (!res.write(c)) {
          req.pause();
          res.once('drain', () => req.resume());
        }
      });
      req.on('end', () => res.end());
      return;
    }
    // /download: the first megabyte, then wait until the client has seen it, then the rest.
    res.writeHead(200);
    res.write(Buffer.alloc(1 << 20, 1));
    void downloadMayFinish.then(() => res.end(Buffer.alloc(1 << 20, 2)));
  });
  const { router } = await startRouter(t, table(1, { 'big.test': 's' }, { s: [up('i', u.port)] }));

  // Upload: send 1 MiB, wait until the upstream has seen bytes (a buffering proxy would hang here), then 31 MiB more.
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let gotBytes = 0;
  const done = new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: router.port, method: 'POST', path: '/echo', headers: { host: 'big.test' } }, (res) => {
      res.on('data', (c: Buffer) => {
        got.update(c);
        gotBytes += c.length;
      });
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    const chunk = (i: number) => {
      const c = randomBytes(1 << 20);
      sent.update(c);
      return c;
    };
    req.write(chunk(0));
    void uploadStarted.then(async () => {
      for (let i = 1; i < 32; i++) {
        if (!req.write(chunk(i))) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    });
  });
  assert.equal(await done, 200);
  assert.equal(gotBytes, 32 << 20);
  assert.equal(got.digest('hex'), sent.digest('hex'));

  // Download: the client must see the first megabyte before the upstream sends the rest.
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: router.port, path: '/download', headers: { host: 'big.test' } }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        if (n < 1 << 20 && n + c.length >= 1 << 20) releaseDownload();
        n += c.length;
      });
      res.on('end', () => {
        assert.equal(n, 2 << 20);
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
  const s = router.stats().services.s;
  assert.equal(s.bytesIn, 32 << 20);
  assert.equal(s.bytesOut, (32 << 20) + (2 << 20));
});

test('preserves status, headers and repeated Set-Cookie; sets X-Forwarded-*; drops hop-by-hop headers', async (t) => {
  let seen: IncomingMessage | null = null;
  const u = await upstream(t, (req, res) => {
    seen = req;
    req.resume();
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
    res.setHeader('X-App', 'yes');
    res.writeHead(418, 'Custom Reason');
    res.end('teapot');
  });
  const { router } = await startRouter(t, table(1, { 'h.test': 's' }, { s: [up('i', u.port)] }));
  const r = await send(router.port, 'H.test:9999', {
    path: '/p?q=1',
    headers: {
      'X-Forwarded-For': '203.0.113.7',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'spoofed.example',
      Connection: 'keep-alive, X-Hop',
      'X-Hop': 'secret',
      'Keep-Alive': 'timeout=5',
      TE: 'trailers',
      'X-Custom': 'kept',
    },
  });
  assert.equal(r.status, 418);
  assert.equal(r.statusMessage, 'Custom Reason');
  assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
  assert.equal(r.headers['x-app'], 'yes');
  assert.equal(r.body.toString(), 'teapot');

  const req = seen as IncomingMessage | null;
  assert.ok(req);
  assert.equal(req.url, '/p?q=1');
  assert.equal(req.headers.host, 'H.test:9999', 'the original Host reaches the app');
  assert.equal(req.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(req.headers['x-forwarded-proto'], 'http');
  assert.equal(req.headers['x-forwarded-host'], 'H.test:9999');
  assert.equal(req.headers['x-custom'], 'kept');
  assert.equal(req.headers['x-hop'], undefined);
  assert.equal(req.headers['keep-alive'], undefined);
  assert.equal(req.headers.te, undefined);
});

test('proxies a WebSocket and counts it', async (t) => {
  const server = createServer((_req, res) => res.end('http'));
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['x-forwarded-host']}`);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = await listen(server);
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { router } = await startRouter(t, table(1, { 'ws.test': 's' }, { s: [up('i-ws', port)] }));

  const ws = new WebSocket(`ws://127.0.0.1:${router.port}/socket`, { headers: { host: 'ws.test' } });
  const messages: string[] = [];
  const waiting: ((m: string) => void)[] = [];
  ws.on('message', (m) => {
    const w = waiting.shift();
    if (w) w(m.toString());
    else messages.push(m.toString());
  });
  const next = () => (messages.length ? Promise.resolve(messages.shift()!) : new Promise<string>((r) => waiting.push(r)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  assert.equal(await next(), 'hello ws.test');
  ws.send('ping 1');
  assert.equal(await next(), 'ping 1');
  const big = 'x'.repeat(200_000);
  ws.send(big);
  assert.equal(await next(), big);

  let s = router.stats().services.s;
  assert.deepEqual(s.websockets, { opened: 1, active: 1 });
  assert.equal(s.status['1xx'], 1);
  assert.equal(router.inflight(['i-ws']).counts['i-ws'], 1, 'an open websocket counts as in flight');

  ws.close();
  await waitFor(() => router.stats().services.s.websockets.active === 0, 'the websocket to close');
  s = router.stats().services.s;
  assert.equal(s.websockets.opened, 1);
  assert.equal(router.inflight(['i-ws']).counts['i-ws'], 0);

  // A refused upstream: the handshake goes to another instance (the dead one is forced first).
  const { router: r2 } = await startRouter(t, table(1, { 'ws.test': 's' }, { s: [up('i-dead', await deadPort()), up('i-ws', port)] }), { routerId: 'r2' });
  const random = t.mock.method(Math, 'random', () => 0);
  const ws2 = new WebSocket(`ws://127.0.0.1:${r2.port}/`, { headers: { host: 'ws.test' } });
  const hello = await new Promise<string>((resolve, reject) => {
    ws2.once('message', (m) => resolve(m.toString()));
    ws2.once('error', reject);
  });
  random.mock.restore();
  assert.equal(hello, 'hello ws.test');
  assert.equal(r2.stats().services.s.upstreamErrors, 0);
  ws2.close();

  // Unknown hosts are refused with a plain 404 on the raw socket.
  const refused = new WebSocket(`ws://127.0.0.1:${router.port}/`, { headers: { host: 'nope.test' } });
  const status = await new Promise<number>((resolve) => {
    refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    refused.on('error', () => resolve(-1));
  });
  assert.equal(status, 404);
});

test('retries safely on an upstream that refuses connections: no request fails', async (t) => {
  const live = await upstream(t, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(`live ${req.method} ${Buffer.concat(chunks).length}`));
  });
  const dead = await deadPort();
  const routes = table(1, { 'r.test': 's' }, { s: [up('i-dead', dead), up('i-live', live.port)] });
  const { router } = await startRouter(t, routes);
  // Force the first pick onto the dead upstream (index 0), so the retry path runs for sure, for a GET and a POST:
  // after a refusal the router avoids that upstream for a while, so only a fresh router's first request is certain.
  const random = t.mock.method(Math, 'random', () => 0);
  const first = await send(router.port, 'r.test');
  assert.equal(first.body.toString(), 'live GET 0');
  const { router: forPost } = await startRouter(t, routes, { routerId: 'r-post' });
  const post = await send(forPost.port, 'r.test', { method: 'POST', body: 'y'.repeat(5000) });
  assert.equal(post.body.toString(), 'live POST 5000');
  random.mock.restore();

  for (let i = 0; i < 29; i++) {
    const r = await send(router.port, 'r.test');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'live GET 0');
  }
  // A POST whose body was never sent is safe to send elsewhere too.
  for (let i = 0; i < 10; i++) {
    const r = await send(router.port, 'r.test', { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'live POST 1000');
  }
  assert.equal(router.stats().services.s.upstreamErrors, 0);
  assert.equal(router.stats().services.s.status['2xx'], 40);

  // With every upstream gone, the answer is a plain 502.
  const { router: r2 } = await startRouter(t, table(1, { 'r.test': 's' }, { s: [up('i-dead', dead)] }), { routerId: 'r2' });
  const bad = await send(r2.port, 'r.test');
  assert.equal(bad.status, 502);
  assert.match(bad.body.toString(), /could not be reached/);
  assert.equal(r2.stats().services.s.upstreamErrors, 1);
});

test('counts requests, status classes, bytes, latency and unknown hosts; answers stats over the bus', async (t) => {
  const u = await upstream(t, (req, res) => {
    req.resume();
    if (req.url === '/missing') res.writeHead(404);
    res.end('0123456789');
  });
  const { router, bus } = await startRouter(t, table(1, { 'st.test': 'w/p/s', 'none.test': 'w/p/none' }, { 'w/p/s': [up('i', u.port)], 'w/p/none': [] }));
  for (let i = 0; i < 5; i++) await send(router.port, 'st.test');
  await send(router.port, 'st.test', { path: '/missing' });
  await send(router.port, 'st.test', { method: 'POST', body: 'abcd' });
  await send(router.port, 'none.test');
  await send(router.port, 'unknown.test');
  await send(router.port, 'unknown2.test');

  const stats = await bus.request<RouterStatsReply>(subjects.routerRpc('r1'), { op: 'stats' });
  assert.equal(stats.routerId, 'r1');
  assert.equal(stats.unknownHost, 2);
  const s = stats.services['w/p/s'];
  assert.equal(s.requests, 7);
  assert.deepEqual(s.status, { '1xx': 0, '2xx': 6, '3xx': 0, '4xx': 1, '5xx': 0 });
  assert.equal(s.bytesIn, 4);
  assert.equal(s.bytesOut, 70);
  assert.equal(s.upstreamErrors, 0);
  assert.equal(s.latency.count, 7);
  assert.ok(s.latency.p50 > 0 && s.latency.p50 <= s.latency.p99 && s.latency.p99 <= s.latency.max);
  const none = stats.services['w/p/none'];
  assert.equal(none.requests, 1);
  assert.equal(none.status['5xx'], 1);

  await assert.rejects(bus.request(subjects.routerRpc('r1'), { op: 'bogus' }), /unknown router request/);
});

test('persists the applied table and routes from it with no controller', async (t) => {
  const u = await named(t, 'persisted');
  const dataDir = await mkdtemp(join(tmpdir(), 'enjin-router-'));
  // Registered before the routers' own stop hooks, so it runs first: a table write still under way may refill the
  // directory while it goes, and rm retries until the writer is done.
  t.after(() => rm(dataDir, { recursive: true, force: true, maxRetries: 10 }));

  const first = await startRouter(t, null, { dataDir });
  first.bus.publish(subjects.routes, table(3, { 'p.test': 's' }, { s: [up('i', u.port)] }));
  await waitFor(async () => {
    try {
      return (JSON.parse(await readFile(join(dataDir, 'routes.json'), 'utf8')) as RouteTableUpdate).seq === 3;
    } catch {
      return false;
    }
  }, 'routes.json to be written');
  await first.router.stop();

  // A new router, a bus where nobody answers: it routes at once from the file.
  const second = await startRouter(t, null, { dataDir, routerId: 'r2' });
  const r = await send(second.router.port, 'p.test');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'persisted');
  assert.equal(second.router.inflight([]).seq, 3);
});

test('fetches the table in the background until the controller answers', async (t) => {
  const u = await named(t, 'late');
  const { router, bus } = await startRouter(t, null);
  assert.equal((await send(router.port, 'late.test')).status, 404);
  bus.handle(subjects.routesRequest, async () => table(0, { 'late.test': 's' }, { s: [up('i', u.port)] }));
  await waitFor(() => router.inflight([]).seq === 0, 'the table to be fetched');
  assert.equal((await send(router.port, 'late.test')).body.toString(), 'late');
});

test('applies tables in order: an older seq is ignored, a new incarnation replaces', async (t) => {
  const a = await named(t, 'a');
  const b = await named(t, 'b');
  const c = await named(t, 'c');
  const { router, bus } = await startRouter(t, table(1, { 'o.test': 's' }, { s: [up('i-a', a.port)] }));
  const seqOf = async () => (await bus.request<RouterInflightReply>(subjects.routerRpc('r1'), { op: 'inflight', instanceIds: [] })).seq;

  bus.publish(subjects.routes, table(5, { 'o.test': 's' }, { s: [up('i-b', b.port)] }));
  await waitFor(async () => (await seqOf()) === 5, 'seq 5');
  bus.publish(subjects.routes, table(4, { 'o.test': 's' }, { s: [up('i-a', a.port)] }));
  bus.publish(subjects.routes, table(5, { 'o.test': 's' }, { s: [up('i-a', a.port)] }));
  // A marker published after them: once it is applied, the two before it have been seen (the bus keeps order).
  bus.publish(subjects.routes, table(6, { 'o.test': 's', 'marker.test': 's' }, { s: [up('i-b', b.port)] }));
  await waitFor(async () => (await seqOf()) === 6, 'seq 6');
  assert.equal((await send(router.port, 'o.test')).body.toString(), 'b');

  bus.publish(subjects.routes, table(0, { 'o.test': 's' }, { s: [up('i-c', c.port)] }, 'inc-2'));
  await waitFor(() => router.inflight([]).incarnation === 'inc-2', 'the new incarnation');
  const reply = router.inflight([]);
  assert.equal(reply.seq, 0);
  assert.equal((await send(router.port, 'o.test')).body.toString(), 'c');
});

test('counts requests in flight per instance, also after the instance leaves the table', async (t) => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  let arrived = 0;
  const u = await upstream(t, (req, res) => {
    arrived++;
    req.resume();
    void held.then(() => res.end('slow'));
  });
  const other = await named(t, 'other');
  const { router, bus } = await startRouter(t, table(1, { 'slow.test': 's' }, { s: [up('i-slow', u.port)] }));
  const ask = () => bus.request<RouterInflightReply>(subjects.routerRpc('r1'), { op: 'inflight', instanceIds: ['i-slow', 'i-unknown'] });

  const pending = [send(router.port, 'slow.test'), send(router.port, 'slow.test')];
  await waitFor(() => arrived === 2, 'both requests to reach the upstream');
  let reply = await ask();
  assert.deepEqual(reply.counts, { 'i-slow': 2, 'i-unknown': 0 });
  assert.equal(reply.routerId, 'r1');
  assert.equal(reply.incarnation, 'inc-1');
  assert.equal(reply.seq, 1);

  // The instance leaves the table (a deploy): its requests still count until they finish.
  bus.publish(subjects.routes, table(2, { 'slow.test': 's' }, { s: [up('i-other', other.port)] }));
  await waitFor(async () => (await ask()).seq === 2, 'seq 2');
  reply = await ask();
  assert.equal(reply.counts['i-slow'], 2);
  assert.equal((await send(router.port, 'slow.test')).body.toString(), 'other');

  release();
  for (const r of await Promise.all(pending)) assert.equal(r.body.toString(), 'slow');
  await waitFor(async () => (await ask()).counts['i-slow'] === 0, 'in-flight count to drop to 0');
});

test('a client that goes away aborts its upstream request', async (t) => {
  let upstreamClosed: () => void = () => {};
  const closed = new Promise<void>((r) => (upstreamClosed = r));
  let arrived: () => void = () => {};
  const reached = new Promise<void>((r) => (arrived = r));
  const u = await upstream(t, (req, res) => {
    res.on('close', () => upstreamClosed());
    arrived();
    req.resume(); // never answers
  });
  const { router } = await startRouter(t, table(1, { 'gone.test': 's' }, { s: [up('i', u.port)] }));
  const req = request({ host: '127.0.0.1', port: router.port, path: '/', headers: { host: 'gone.test' } });
  req.on('error', () => {});
  req.end();
  await reached;
  assert.equal(router.inflight(['i']).counts.i, 1);
  req.destroy();
  await closed;
  await waitFor(() => router.inflight(['i']).counts.i === 0, 'the in-flight count to drop');
  assert.equal(router.stats().services.s.upstreamErrors, 0, 'a client leaving is not an upstream error');
});
