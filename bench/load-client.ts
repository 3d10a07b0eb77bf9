// A load generator in its own process, so it never shares an event loop with what it measures. Open loop: requests
// leave on a fixed schedule whatever the answers' speed (bounded in flight), and each latency is measured from its
// scheduled start, so a stalled server shows as latency rather than as fewer requests (no coordinated omission).
// Usage: node --import tsx bench/load-client.ts <json options>; prints one JSON line with the results.
import { Agent, request } from 'undici';

interface LoadOptions {
  url: string;
  host?: string;
  token?: string;
  ratePerSecond: number;
  seconds: number;
  connections: number;
  maxInflight: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
const dispatcher = new Agent({ connections: opts.connections, pipelining: 1, keepAliveTimeout: 30_000 });
const latencies: number[] = [];
let errors = 0;
let non2xx = 0;
let skipped = 0;
let inflight = 0;
const headers: Record<string, string> = {};
if (opts.host) headers.host = opts.host;
if (opts.token) headers.authorization = `Bearer ${opts.token}`;

async function one(scheduledAt: number): Promise<void> {
  inflight++;
  try {
    const res = await request(opts.url, { dispatcher, headers, headersTimeout: 30_000, bodyTimeout: 30_000 });
    await res.body.dump({ limit: Number.MAX_SAFE_INTEGER }).catch(() => res.body.text());
    if (res.statusCode < 200 || res.statusCode >= 300) non2xx++;
    latencies.push(performance.now() - scheduledAt);
  } catch {
    errors++;
  } finally {
    inflight--;
  }
}

const interval = 1000 / opts.ratePerSecond;
const start = performance.now();
const total = Math.round(opts.ratePerSecond * opts.seconds);
const pending: Promise<void>[] = [];
for (let i = 0; i < total; i++) {
  const due = start + i * interval;
  const wait = due - performance.now();
  if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  if (inflight >= opts.maxInflight) {
    skipped++;
    continue;
  }
  pending.push(one(due));
}
await Promise.all(pending);
const elapsed = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const at = (q: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : Number.NaN);
process.stdout.write(`${JSON.stringify({ sent: latencies.length + errors, ok: latencies.length - non2xx, errors, non2xx, skipped, rps: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), max: latencies.at(-1) ?? Number.NaN })}\n`);
await dispatcher.close();
