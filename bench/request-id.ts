// What X-Request-Id adds to the router's hot path: the id itself (fresh, or a client's checked) and the header
// rewrite that carries it, in nanoseconds per request. A proxied request costs tens of microseconds end to end.
import { forwardRequest, forwardResponseHeaders } from '../src/router/headers.ts';
import { newRequestId, requestIdFrom } from '../src/router/request-id.ts';

const ROUNDS = 5;
const CALLS = 1_000_000;

/** Best of ROUNDS runs of CALLS calls, after a warm-up: the least disturbed figure on a shared machine. */
function nsPerCall(f: () => unknown): number {
  for (let i = 0; i < CALLS / 5; i++) f();
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < CALLS; i++) f();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / CALLS);
  }
  return best;
}

const raw = ['Host', 'app.example.com', 'User-Agent', 'curl/8.0', 'Accept', '*/*', 'Accept-Encoding', 'gzip', 'Cookie', 'a=1; b=2'];
const uuid = '0f8fad5b-d9cb-469f-a165-70867728950e';
const response = ['Content-Type', 'text/plain', 'Content-Length', '5', 'Date', 'Mon, 23 Nov 2026 16:00:00 GMT'].map((s) => Buffer.from(s, 'latin1'));
const rows: Array<[string, number]> = [
  ['newRequestId()', nsPerCall(() => newRequestId())],
  ['requestIdFrom(client uuid)', nsPerCall(() => requestIdFrom(uuid))],
  ['forwardRequest, no client id', nsPerCall(() => forwardRequest(raw, '10.0.0.1', false, '/'))],
  ['forwardRequest, client id kept', nsPerCall(() => forwardRequest([...raw, 'X-Request-Id', uuid], '10.0.0.1', false, '/'))],
  ['forwardResponseHeaders', nsPerCall(() => forwardResponseHeaders(response, uuid))],
];
for (const [name, ns] of rows) console.log(`${name.padEnd(32)} ${ns.toFixed(0).padStart(5)} ns`);
