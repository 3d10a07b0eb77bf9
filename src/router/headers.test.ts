// Unit tests of header rewriting: hop-by-hop removal, X-Forwarded-*, body detection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardRequest, forwardResponseHeaders } from './headers.ts';

const pairs = (flat: string[]) => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
};

test('request: hop-by-hop headers and those named by Connection are dropped, X-Forwarded-* set', () => {
  const f = forwardRequest(
    [
      'Host', 'App.Example.com', 'Host', 'evil.example.com', 'Connection', 'keep-alive, X-Secret', 'X-Secret', '1',
      'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Transfer-Encoding', 'chunked', 'Expect', '100-continue',
      'Proxy-Connection', 'x', 'X-Forwarded-For', '1.2.3.4', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'spoof',
      'Cookie', 'a=1', 'Cookie', 'b=2', 'Upgrade', 'h2c',
    ],
    '10.0.0.9',
    false,
  );
  assert.equal(f.host, 'App.Example.com');
  assert.equal(f.hasBody, true);
  assert.match(f.problem ?? '', /more than one Host header/, 'two Host headers are refused');
  assert.deepEqual(pairs(f.headers), [
    ['Host', 'App.Example.com'],
    ['Cookie', 'a=1'],
    ['Cookie', 'b=2'],
    ['x-forwarded-for', '1.2.3.4, 10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'App.Example.com'],
    ['x-request-id', f.requestId],
  ]);
});

test('request: a body is detected from Content-Length, a zero length is none', () => {
  assert.equal(forwardRequest(['Host', 'a', 'Content-Length', '0'], '1.1.1.1', false).hasBody, false);
  assert.equal(forwardRequest(['Host', 'a', 'content-length', '12'], '1.1.1.1', false).hasBody, true);
  assert.equal(forwardRequest(['Host', 'a'], '1.1.1.1', false).hasBody, false);
});

test('request: an upgrade keeps its Connection and Upgrade headers', () => {
  const f = forwardRequest(['Host', 'a', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'], '1.1.1.1', true);
  assert.deepEqual(pairs(f.headers).slice(0, 4), [['Host', 'a'], ['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Key', 'k']]);
});

test('response: hop-by-hop dropped, repeated headers and raw bytes kept', () => {
  const raw = ['Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Connection', 'keep-alive, X-Private', 'X-Private', 'p', 'Keep-Alive', 'timeout=5',
    'Transfer-Encoding', 'chunked', 'X-Name', 'caf\u00e9'].map((s) => Buffer.from(s, 'latin1'));
  assert.deepEqual(pairs(forwardResponseHeaders(raw, 'rid-1')), [['Set-Cookie', 'a=1'], ['set-cookie', 'b=2'], ['X-Name', 'caf\u00e9'], ['x-request-id', 'rid-1']]);
});

test('request: Connection cannot strip Host or the X-Forwarded-* headers the router sets', () => {
  const f = forwardRequest(
    ['Host', 'app.test', 'Connection', 'x-forwarded-for, x-forwarded-proto, x-forwarded-host, host, x-other', 'X-Other', '1', 'Accept', '*/*'],
    '10.0.0.9',
    false,
  );
  assert.equal(f.problem, null);
  assert.deepEqual(pairs(f.headers), [
    ['Host', 'app.test'],
    ['Accept', '*/*'],
    ['x-forwarded-for', '10.0.0.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'app.test'],
    ['x-request-id', f.requestId],
  ]);
});

test('request: an absolute-form target routes by its authority, which replaces Host; other forms are refused', () => {
  const f = forwardRequest(['Host', 'other.test', 'Accept', '*/*'], '1.1.1.1', false, 'http://App.test:8080/p?q=1');
  assert.equal(f.host, 'App.test:8080');
  assert.equal(f.path, '/p?q=1');
  assert.deepEqual(pairs(f.headers).filter(([n]) => /host/i.test(n)), [['Host', 'App.test:8080'], ['x-forwarded-host', 'App.test:8080']]);
  assert.equal(forwardRequest(['Host', 'a'], '1.1.1.1', false, 'http://b.test').path, '/');
  assert.equal(forwardRequest(['Host', 'a'], '1.1.1.1', false, '/x').path, '/x');
  for (const bad of ['ftp://a.test/x', 'a.test:80', 'http://user@a.test/', 'http:///x']) {
    assert.match(forwardRequest(['Host', 'a'], '1.1.1.1', false, bad).problem ?? '', /request target/, bad);
  }
});

test('request: a sane client X-Request-Id is kept (the first one only); anything else is replaced by a fresh id', () => {
  const ids = (raw: string[]) => pairs(forwardRequest(['Host', 'a', ...raw], '1.1.1.1', false).headers).filter(([n]) => n === 'x-request-id');
  assert.deepEqual(ids(['X-Request-Id', 'abc-123', 'x-request-id', 'second']), [['x-request-id', 'abc-123']]);
  const uuid = '0f8fad5b-d9cb-469f-a165-70867728950e';
  assert.deepEqual(ids(['X-REQUEST-ID', uuid]), [['x-request-id', uuid]]);
  for (const bad of ['', 'a b', 'x'.repeat(129), 'id\u00e9', 'a;rm -rf', 'line<br>']) {
    const got = ids(['X-Request-Id', bad]);
    assert.equal(got.length, 1, JSON.stringify(bad));
    assert.notEqual(got[0][1], bad, `${JSON.stringify(bad)} is replaced`);
    assert.match(got[0][1], /^[0-9a-f]{12}-[0-9a-z]+$/);
  }
  const fresh = new Set(Array.from({ length: 1000 }, () => forwardRequest(['Host', 'a'], '1.1.1.1', false).requestId));
  assert.equal(fresh.size, 1000, 'fresh ids do not repeat');
});

test('response: the id is returned once, even when the app sends its own', () => {
  const raw = ['X-Request-Id', 'from-app', 'Content-Type', 'text/plain'].map((s) => Buffer.from(s, 'latin1'));
  assert.deepEqual(pairs(forwardResponseHeaders(raw, 'rid-2')), [['Content-Type', 'text/plain'], ['x-request-id', 'rid-2']]);
});
