// What the router allows its clients: connections, time to send headers and body, bytes buffered, requests in flight.
import { readNofileLimit } from '../process/fd-limit.ts';

export interface RouterLimits {
  /** client connections on the listener; beyond it new connections are closed at once */
  maxConnections: number;
  /** time from connecting (or from a request's first byte) to a complete request head; then 408 or closed */
  headersTimeoutMs: number;
  /** an idle keep-alive connection is closed after this */
  keepAliveTimeoutMs: number;
  /** a request body up to this size is received whole before an upstream connection is taken */
  requestBufferBytes: number;
  /** a body may start slowly for this long... */
  bodyGraceMs: number;
  /** ...then must keep arriving at this average rate (bytes per second since the head), or the client gets 408 */
  bodyMinBytesPerSecond: number;
  /** and never pause longer than this between two chunks */
  bodyIdleTimeoutMs: number;
  /** requests one client address may have at upstreams at once; beyond it, 429 */
  maxInflightPerClient: number;
}

export const DEFAULT_LIMITS: Omit<RouterLimits, 'maxConnections'> = {
  headersTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  requestBufferBytes: 64 * 1024,
  bodyGraceMs: 10_000,
  bodyMinBytesPerSecond: 1024,
  bodyIdleTimeoutMs: 30_000,
  maxInflightPerClient: 512,
};

/**
 * Client connections the router accepts, from the process's descriptor limit: a reserve (a tenth, at least 64 and at
 * most 2048) is kept for the API, agent, store, logs and health checks, and half of the rest is left for the upstream
 * sockets that busy client connections need.
 */
export function defaultMaxConnections(softLimit: number): number {
  const limit = Math.min(softLimit, 4_194_304);
  const reserve = Math.min(2048, Math.max(64, Math.floor(limit / 10)));
  return Math.max(16, Math.floor((limit - reserve) / 2));
}

export function resolveLimits(given: Partial<RouterLimits> = {}): RouterLimits {
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as Partial<RouterLimits>;
  return { maxConnections: defaultMaxConnections(readNofileLimit().soft), ...DEFAULT_LIMITS, ...defined };
}
