// Publishes the route table to routers whenever it changes, and answers routers that ask for it.
import type { Bus, Subscription } from '../../bus/bus.ts';
import { newId } from '../../core/ids.ts';
import { subjects, type RouteTableUpdate, type RouterInflightReply } from '../../core/messages.ts';

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
   * flight to them (connection draining). Routers that do not answer are skipped after `timeoutMs`.
   */
  async waitForRouters(opts: { seq: number; instanceIds?: string[]; timeoutMs: number; signal?: AbortSignal; log?: (l: string) => void }): Promise<void> {
    const deadline = Date.now() + opts.timeoutMs;
    await Promise.all(
      [...this.routers.keys()].map(async (routerId) => {
        for (;;) {
          if (opts.signal?.aborted) throw opts.signal.reason;
          let reply: RouterInflightReply | null = null;
          try {
            reply = await this.bus.request<RouterInflightReply>(subjects.routerRpc(routerId), { op: 'inflight', instanceIds: opts.instanceIds ?? [] }, { timeoutMs: 2000 });
          } catch (err) {
            opts.log?.(`router ${routerId} did not answer (${(err as Error).message}); not waiting for it`);
            return;
          }
          if (reply.held === this.incarnation) {
            opts.log?.(`router ${routerId} keeps its previous routes and refuses this controller's empty table; allow empty routes if the cluster should route nothing`);
            return;
          }
          const synced = reply.incarnation === this.incarnation && reply.seq >= opts.seq;
          const inflight = Object.values(reply.counts).reduce((a, b) => a + b, 0);
          if (synced && inflight === 0) return;
          if (Date.now() > deadline) {
            opts.log?.(`router ${routerId}: gave up waiting after ${opts.timeoutMs} ms (${synced ? `${inflight} requests still in flight` : 'route table not applied yet'})`);
            return;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }),
    );
  }
}
