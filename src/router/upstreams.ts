// Upstream instances as the router tracks them: a lazily opened connection pool, in-flight counts, recent failures.
import { Pool } from 'undici';
import type { Upstream } from '../core/messages.ts';
import type { RouteTarget } from './route-table.ts';
import type { RoutedUpstream } from './weighted-choice.ts';

/** After a refused connection, other upstreams are preferred for this long: the instance is most likely gone. */
const FAILURE_MEMORY_MS = 2000;

const POOL_OPTIONS: Pool.Options = {
  // Enough parallel keep-alive connections that a busy service is not queued behind the router.
  connections: 128,
  pipelining: 1,
  // Keep-alive sockets live shorter than most servers' own idle timeout (Node: 5 s), so the router rarely reuses one
  // the upstream is about to close; undici also honours a Keep-Alive: timeout hint from the upstream.
  keepAliveTimeout: 4_000,
  // Per request, from the service's `timeouts:`; these only back them up.
  headersTimeout: 60_000,
  bodyTimeout: 300_000,
};

export class UpstreamState {
  readonly instanceId: string;
  readonly host: string;
  readonly port: number;
  /** requests in flight plus open websockets, for draining an instance before it is stopped */
  inflight = 0;
  /** the service's connect timeout, fixed for the pool's life (a changed manifest means new instances) */
  readonly connectMs: number;
  /** performance.now() until which this upstream is avoided */
  avoidUntil = 0;
  /** no longer in the route table: the pool is closing, the state lingers only while requests finish */
  retired = false;
  private pool: Pool | null = null;

  constructor(u: Upstream, connectMs: number) {
    this.connectMs = connectMs;
    this.instanceId = u.instanceId;
    this.host = u.host;
    this.port = u.port;
  }

  sameAddress(u: Upstream): boolean {
    return u.host === this.host && u.port === this.port;
  }

  /** The pool is opened on first use: a table may list many instances this router never sends anything to. */
  dispatcher(): Pool {
    if (this.pool === null) {
      const host = this.host.includes(':') && !this.host.startsWith('[') ? `[${this.host}]` : this.host;
      this.pool = new Pool(`http://${host}:${this.port}`, { ...POOL_OPTIONS, connectTimeout: this.connectMs });
    }
    return this.pool;
  }

  /** Lets requests in progress finish, then closes the pool's connections. */
  retire(): Promise<void> {
    this.retired = true;
    const pool = this.pool;
    return pool === null ? Promise.resolve() : pool.close().catch(() => {});
  }

  /** Closes everything now: used on stop, after the grace period. */
  destroy(): Promise<void> {
    this.retired = true;
    const pool = this.pool;
    return pool === null ? Promise.resolve() : pool.destroy().catch(() => {});
  }

  markFailed(now: number): void {
    this.avoidUntil = now + FAILURE_MEMORY_MS;
  }
}

/**
 * Picks the next upstream of a service by weight (smooth weighted round robin), preferring ones not already tried by
 * this request and not recently refusing connections. Falls back to any untried one, then to any at all, so a request
 * is never refused for want of a perfect candidate. `tried` holds instance ids already attempted (at most a couple:
 * retries are bounded). `target.upstreams` must not be empty.
 */
export function pickUpstream(
  target: Pick<RouteTarget, 'upstreams' | 'choice'>,
  states: ReadonlyMap<string, UpstreamState>,
  now: number,
  tried1: string | null,
  tried2: string | null,
): RoutedUpstream {
  const upstreams = target.upstreams;
  if (upstreams.length === 1) return upstreams[0];
  const untried = (u: RoutedUpstream) => u.instanceId !== tried1 && u.instanceId !== tried2;
  return (
    target.choice.next((u) => {
      if (!untried(u)) return false;
      const s = states.get(u.instanceId);
      return s === undefined || s.avoidUntil <= now;
    }) ??
    target.choice.next(untried) ??
    target.choice.next(() => true)!
  );
}
