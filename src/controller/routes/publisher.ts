// Publishes the route table to routers whenever it changes, and answers routers that ask for it.
import type { Bus, Subscription } from '../../bus/bus.ts';
import { newId } from '../../core/ids.ts';
import { subjects, type RouteTableUpdate, type RouterInflightReply } from '../../core/messages.ts';

/** How often a drain asks each router again. */
const POLL_MS = 100;
/** How long one question to a router may take; shortened near the drain's end, never below MIN_ASK_MS. */
const ASK_MS = 2000;
const MIN_ASK_MS = 250;
/**
 * Routers ask for the table every 15 s (src/router/table-fetch.ts): one silent for three of those has left, and a stop
 * does not wait on it.
 */
export const ROUTER_GONE_MS = 45_000;

export interface WaitForRouters {
  /** the table seq every router must have applied */
  seq: number;
  /** instances whose requests in flight must end (connection draining); absent: only the table is waited for */
  instanceIds?: string[];
  timeoutMs: number;
  signal?: AbortSignal;
  log?: (l: string) => void;
  /** why a router is known gone (its host is down), or null: it is not waited for at all */
  gone?: (routerId: string) => string | null | undefined;
}

type Table = Pick<RouteTableUpdate, 'hosts' | 'services'>;

export class RoutePublisher {
  private readonly incarnation = newId('routes');
  private seq = 0;
  private current: RouteTableUpdate;
  private currentJson = '';
  private scheduled = false;
  private sub: Subscription | null = null;
  /** routers take an empty table from this run: it has published a non-empty one, or an operator allowed it */
  private allowEmpty = false;
  /** only a leading controller publishes; a follower still builds the table for reads */
  private publishing = false;
  /** routers that asked for the table: the ones a route switch waits for */
  readonly routers = new Map<string, { lastSeenAt: number }>();

  constructor(private readonly bus: Bus, private readonly build: () => Table) {
    this.current = { incarnation: this.incarnation, seq: 0, hosts: {}, services: {} };
  }

  start(): void {
    this.publishing = true;
    this.currentJson = '';
    this.refreshNow();
    this.sub = this.bus.handle(subjects.routesRequest, async (data) => {
      const routerId = (data as { routerId?: string })?.routerId;
      if (routerId) this.routers.set(routerId, { lastSeenAt: Date.now() });
      return this.current;
    });
  }

  stop(): void {
    this.publishing = false;
    this.sub?.unsubscribe();
    this.sub = null;
  }

  get table(): RouteTableUpdate {
    return this.current;
  }

  /** Coalesces bursts of state changes (a node's full report) into one rebuild. */
  refresh(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.refreshNow();
    });
  }

  /** Rebuilds now and returns the seq routers must reach to have seen the result. */
  refreshNow(): number {
    const table = this.build();
    const json = JSON.stringify(table);
    if (json === this.currentJson) return this.current.seq;
    this.currentJson = json;
    this.current = { incarnation: this.incarnation, seq: ++this.seq, ...table, ...(this.allowEmpty ? { allowEmpty: true } : {}) };
    // Routers refuse an empty table from a new run (a controller that lost its store); once this run has routed
    // something, its empty tables are real decisions.
    if (Object.keys(table.hosts).length > 0) this.allowEmpty = true;
    if (this.publishing) this.bus.publish(subjects.routes, this.current);
    return this.current.seq;
  }

  /**
   * The operator's word that an empty route table is meant (the cluster really routes nothing now): the table is
   * published again with `allowEmpty`, and routers holding an older table take it. Returns the seq published.
   */
  allowEmptyOnce(): number {
    this.allowEmpty = true;
    this.currentJson = '';
    return this.refreshNow();
  }

  /**
   * Waits until every known router has applied at least `seq` and, if `instanceIds` are given, has no request in
   * flight to them (connection draining). Never past `timeoutMs`: a router that does not answer, that is slow to apply
   * the table, or whose requests do not finish is given up on then, and the caller goes on (stops the instance).
   * Routers silent for longer than ROUTER_GONE_MS are not waited for at all: they have left (a removed node).
   */
  async waitForRouters(opts: WaitForRouters): Promise<void> {
    const started = Date.now();
    const deadline = started + opts.timeoutMs;
    const routers = [...this.routers].filter(([routerId, r]) => {
      const gone = started - r.lastSeenAt > ROUTER_GONE_MS ? `has not asked for routes for ${Math.round((started - r.lastSeenAt) / 1000)} s` : opts.gone?.(routerId);
      if (!gone) return true;
      opts.log?.(`router ${routerId} ${gone}; not waiting for it`);
      return false;
    });
    await Promise.all(routers.map(([routerId]) => this.waitForRouter(routerId, deadline, opts)));
  }

  private async waitForRouter(routerId: string, deadline: number, opts: WaitForRouters): Promise<void> {
    let told = false;
    for (;;) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      let reply: RouterInflightReply | null = null;
      // One question never outlasts the drain, but gets a fair chance even when little of it is left.
      const askMs = Math.max(MIN_ASK_MS, Math.min(ASK_MS, deadline - Date.now()));
      try {
        reply = await this.bus.request<RouterInflightReply>(subjects.routerRpc(routerId), { op: 'inflight', instanceIds: opts.instanceIds ?? [] }, { timeoutMs: askMs });
      } catch (err) {
        // A router busy or briefly cut off may still route to the instance: ask again until the drain is over.
        if (Date.now() >= deadline) {
          opts.log?.(`router ${routerId} did not answer (${(err as Error).message}); gave up waiting for it after ${opts.timeoutMs} ms`);
          return;
        }
        await this.pause(opts.signal);
        continue;
      }
      if (reply.held === this.incarnation) {
        opts.log?.(`router ${routerId} keeps its previous routes and refuses this controller's empty table; allow empty routes if the cluster should route nothing`);
        return;
      }
      const synced = reply.incarnation === this.incarnation && reply.seq >= opts.seq;
      const inflight = Object.values(reply.counts).reduce((a, b) => a + b, 0);
      if (synced && inflight === 0) return;
      if (Date.now() >= deadline) {
        opts.log?.(`router ${routerId}: gave up waiting after ${opts.timeoutMs} ms (${synced ? `${inflight} requests still in flight` : 'route table not applied yet'})`);
        return;
      }
      if (synced && !told) {
        told = true;
        opts.log?.(`router ${routerId}: routes applied, waiting for ${inflight} request(s) in flight to finish`);
      }
      await this.pause(opts.signal);
    }
  }

  private pause(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, POLL_MS);
      function done() {
        signal?.removeEventListener('abort', done);
        clearTimeout(timer);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}
