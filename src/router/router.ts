// The router: one per node, an HTTP/1.1 + WebSocket reverse proxy by Host, fed route tables over the bus.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bus, Subscription } from '../bus/bus.ts';
import { invalid } from '../core/errors.ts';
import {
  subjects,
  type RouteTableUpdate,
  type RouterInflightReply,
  type RouterRequest,
  type RouterStatsReply,
  type ServiceStats,
  type Upstream,
} from '../core/messages.ts';
import { forwardRequest } from './headers.ts';
import { resolveLimits, type RouterLimits } from './limits.ts';
import { displayHost, HttpExchange, sendPlain, type ProxyHost } from './proxy.ts';
import { readRouteFile, writeRouteFile } from './route-file.ts';
import { normalizeHost, RouteTable, type RouteTarget } from './route-table.ts';
import { ServiceCounters } from './stats.ts';
import { rejectUpgrade, Tunnel } from './tunnel.ts';
import { UpstreamState } from './upstreams.ts';
import { RouteTableFetch } from './table-fetch.ts';
import { heldMessage, judgeTable } from './table-acceptance.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('router');

export interface RouterOptions {
  routerId: string;
  bus: Bus;
  /** where routes.json lives */
  dataDir: string;
  /** 0 picks a free port; see `Router.port` */
  port: number;
  /** default 0.0.0.0 */
  host?: string;
  /** defaults: see limits.ts; maxConnections is derived from the process's descriptor limit */
  limits?: Partial<RouterLimits>;
}

/** How long stop() lets requests in progress finish before cutting their connections. */
const STOP_GRACE_MS = 5_000;

export class Router implements ProxyHost {
  private readonly opts: RouterOptions;
  private readonly routeFile: string;
  private table: RouteTable = RouteTable.empty();
  private server: Server | null = null;
  private readonly counters = new Map<string, ServiceCounters>();
  private unknownHost = 0;
  private since = new Date().toISOString();
  /** upstreams of the current table, by instance id */
  private readonly live = new Map<string, UpstreamState>();
  /** upstreams that left the table while requests to them were still in flight */
  private readonly draining = new Set<UpstreamState>();
  private readonly tunnels = new Set<Tunnel>();
  readonly limits: RouterLimits;
  /** requests in flight upstream per client address */
  private readonly clientInflight = new Map<string, number>();
  /** connections that have not yet sent a request: they are under the first-request timeout */
  private readonly awaitingFirstRequest = new WeakSet<Socket>();
  /** connections closed at once because the listener was full */
  private dropped = 0;
  private readonly subscriptions: Subscription[] = [];
  private fetch: RouteTableFetch | null = null;
  private stopping = false;
  private persistNext: RouteTableUpdate | null = null;
  private persisting: Promise<void> | null = null;
  /** the incarnation of an empty table refused (see table-acceptance.ts); null once a table is applied */
  private held: string | null = null;

  constructor(opts: RouterOptions) {
    this.opts = opts;
    this.routeFile = join(opts.dataDir, 'routes.json');
    this.limits = resolveLimits(opts.limits);
  }

  /** Connections refused since start because the listener had `maxConnections` open. */
  get droppedConnections(): number {
    return this.dropped;
  }

  get upstreamStates(): ReadonlyMap<string, UpstreamState> {
    return this.live;
  }

  /** The port actually listened on (useful when started with port 0); 0 before start. */
  get port(): number {
    const addr = this.server?.address();
    return addr !== null && typeof addr === 'object' ? addr.port : 0;
  }

  async start(): Promise<void> {
    if (this.server !== null) throw new Error('router already started');
    this.stopping = false;
    this.since = new Date().toISOString();
    await mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    await chmod(this.opts.dataDir, 0o700);
    // The persisted table first: the router routes as soon as it listens, even with the controller down.
    const saved = await readRouteFile(this.routeFile);
    if (saved !== null) this.offer(saved, false);

    const limits = this.limits;
    const server = createServer(
      {
        // Uploads may take longer than any fixed request limit: bodies are bounded by rate instead (request-body.ts).
        // Headers, including a connection's first bytes, are bounded by headersTimeout (408, then closed).
        requestTimeout: 0,
        headersTimeout: limits.headersTimeoutMs,
        keepAliveTimeout: limits.keepAliveTimeoutMs,
        // Node checks those timeouts on this interval (default 30 s); often enough that they hold close to their value.
        connectionsCheckingInterval: Math.max(250, Math.min(2_000, Math.floor(limits.headersTimeoutMs / 4))),
        noDelay: true,
      },
      (req, res) => this.onRequest(req, res),
    );
    // Beyond this, Node closes new connections at once: descriptors stay for the API, health checks and upstreams.
    server.maxConnections = limits.maxConnections;
    server.on('drop', () => this.dropped++);
    // Node's header timeout starts with a request's first byte: a connection that never sends one would stay forever.
    // Until its first request, a connection gets the header timeout as an inactivity timeout (Node then closes it).
    server.on('connection', (socket: Socket) => {
      socket.setTimeout(limits.headersTimeoutMs);
      this.awaitingFirstRequest.add(socket);
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;

    const bus = this.opts.bus;
    // Subscribe before asking, so a table published while the request is in flight is not missed.
    this.subscriptions.push(bus.subscribe(subjects.routes, (msg) => this.offer(msg.data as RouteTableUpdate, true)));
    this.subscriptions.push(bus.handle(subjects.routerRpc(this.opts.routerId), async (data) => this.answer(data as RouterRequest)));
    this.fetch = new RouteTableFetch(bus, this.opts.routerId, (update) => this.offer(update, true));
    this.fetch.start();
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === null || this.stopping) return;
    this.stopping = true;
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
    this.fetch?.stop();
    this.fetch = null;

    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    for (const t of [...this.tunnels]) t.close();
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (grace = setTimeout(resolve, STOP_GRACE_MS)))]);
    clearTimeout(grace);
    server.closeAllConnections();
    await closed;

    const states = [...this.live.values(), ...this.draining];
    this.live.clear();
    this.draining.clear();
    await Promise.all(states.map((s) => s.destroy()));
    await this.persisting;
    this.server = null;
  }

  stats(): RouterStatsReply {
    const services: Record<string, ServiceStats> = {};
    for (const [key, c] of this.counters) services[key] = c.snapshot();
    return { routerId: this.opts.routerId, since: this.since, services, unknownHost: this.unknownHost, ...(this.held ? { held: this.held } : {}) };
  }

  /** Requests in flight (and open websockets) per instance, including instances already gone from the table. */
  inflight(instanceIds: string[]): RouterInflightReply {
    const counts: Record<string, number> = {};
    for (const id of instanceIds) counts[id] = this.live.get(id)?.inflight ?? 0;
    for (const s of this.draining) if (s.instanceId in counts) counts[s.instanceId] += s.inflight;
    return { routerId: this.opts.routerId, incarnation: this.table.incarnation, seq: this.table.seq, counts, ...(this.held ? { held: this.held } : {}) };
  }

  // ProxyHost

  lookup(host: string): RouteTarget | undefined {
    return this.table.lookup(host);
  }

  admitClient(address: string): boolean {
    const n = this.clientInflight.get(address) ?? 0;
    if (n >= this.limits.maxInflightPerClient) return false;
    this.clientInflight.set(address, n + 1);
    return true;
  }

  leaveClient(address: string): void {
    const n = (this.clientInflight.get(address) ?? 1) - 1;
    if (n <= 0) this.clientInflight.delete(address);
    else this.clientInflight.set(address, n);
  }

  upstreamState(u: Upstream, connectMs: number): UpstreamState {
    let s = this.live.get(u.instanceId);
    if (s === undefined) {
      s = new UpstreamState(u, connectMs);
      this.live.set(u.instanceId, s);
    }
    return s;
  }

  release(state: UpstreamState): void {
    state.inflight--;
    if (state.retired && state.inflight <= 0) this.draining.delete(state);
  }

  // Request path

  private countersFor(key: string): ServiceCounters {
    let c = this.counters.get(key);
    if (c === undefined) {
      c = new ServiceCounters();
      this.counters.set(key, c);
    }
    return c;
  }

  /**
   * Finds where a request goes and counts it; for an unknown host (404) or a service with no running instance (503)
   * it returns the refusal to send instead. Shared by plain requests and upgrades.
   */
  private route(hostName: string, startedAt: number): { target: RouteTarget; counters: ServiceCounters } | { status: 404 | 503; text: string } {
    const target = this.table.lookup(hostName);
    if (target === undefined) {
      this.unknownHost++;
      return { status: 404, text: `No app is deployed at ${displayHost(hostName)}.\n` };
    }
    const counters = this.countersFor(target.key);
    counters.requests++;
    if (target.upstreams.length === 0) {
      counters.countStatus(503);
      counters.latency.record(performance.now() - startedAt);
      return { status: 503, text: `The service at ${displayHost(hostName)} has no running instance.\n` };
    }
    return { target, counters };
  }

  /** A request began: the connection leaves the first-request timeout (keep-alive and body limits apply from now). */
  private firstRequest(socket: Socket): void {
    if (this.awaitingFirstRequest.delete(socket)) socket.setTimeout(0);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const startedAt = performance.now();
    this.firstRequest(req.socket);
    const forwarded = forwardRequest(req.rawHeaders, req.socket.remoteAddress ?? '', false, req.url ?? '/');
    if (forwarded.problem !== null) {
      sendPlain(res, 400, forwarded.problem, forwarded.requestId, true);
      return;
    }
    const hostName = normalizeHost(forwarded.host);
    const routed = this.route(hostName, startedAt);
    if ('status' in routed) {
      sendPlain(res, routed.status, routed.text, forwarded.requestId);
      return;
    }
    new HttpExchange(this, req, res, hostName, routed.target, routed.counters, forwarded, startedAt).begin();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const startedAt = performance.now();
    this.firstRequest(req.socket);
    // Until the tunnel takes over, a client error must not crash the process.
    socket.on('error', () => socket.destroy());
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const forwarded = forwardRequest(req.rawHeaders, req.socket.remoteAddress ?? '', true, req.url ?? '/');
    if (forwarded.problem !== null) {
      rejectUpgrade(socket, 400, 'Bad Request', forwarded.problem);
      return;
    }
    const hostName = normalizeHost(forwarded.host);
    const routed = this.route(hostName, startedAt);
    if ('status' in routed) {
      rejectUpgrade(socket, routed.status, routed.status === 404 ? 'Not Found' : 'Service Unavailable', routed.text);
      return;
    }
    const tunnel = new Tunnel(this, socket, head, req, hostName, routed.target, routed.counters, forwarded, startedAt, (t) => this.tunnels.delete(t));
    this.tunnels.add(tunnel);
    tunnel.begin();
  }

  // Route tables

  /** Applies a table if it is newer than the current one; returns whether it did. Never awaited by requests. */
  private offer(update: RouteTableUpdate, persist: boolean): boolean {
    if (this.stopping || !update || typeof update !== 'object' || !this.table.accepts(update)) return false;
    let next: RouteTable;
    try {
      next = new RouteTable(update);
    } catch (err) {
      process.emitWarning(`router ${this.opts.routerId} ignored a route table: ${(err as Error).message}`);
      return false;
    }
    if (judgeTable(this.table.source, update) === 'hold') {
      if (this.held !== update.incarnation) log.warn({ routerId: this.opts.routerId, incarnation: update.incarnation, keptIncarnation: this.table.incarnation }, heldMessage(this.opts.routerId, update.incarnation));
      this.held = update.incarnation;
      return false;
    }
    this.held = null;
    this.swap(next);
    if (persist) this.persist(update);
    return true;
  }

  private swap(next: RouteTable): void {
    this.table = next;
    for (const [id, state] of this.live) {
      const u = next.upstreams.get(id);
      if (u !== undefined && state.sameAddress(u)) continue;
      // Gone (or moved): let its requests finish on the old pool, then close it.
      this.live.delete(id);
      void state.retire();
      if (state.inflight > 0) this.draining.add(state);
    }
  }

  /** Coalesces writes: while one is running, only the latest table waits to be written next. */
  private persist(update: RouteTableUpdate): void {
    this.persistNext = update;
    if (this.persisting !== null) return;
    this.persisting = (async () => {
      while (this.persistNext !== null) {
        const u = this.persistNext;
        this.persistNext = null;
        try {
          await writeRouteFile(this.routeFile, u);
        } catch (err) {
          process.emitWarning(`router ${this.opts.routerId} could not save its route table: ${(err as Error).message}`);
        }
      }
      this.persisting = null;
    })();
  }

  private async answer(request: RouterRequest): Promise<RouterStatsReply | RouterInflightReply> {
    switch (request?.op) {
      case 'stats':
        return this.stats();
      case 'inflight':
        if (!Array.isArray(request.instanceIds) || request.instanceIds.some((id) => typeof id !== 'string')) {
          throw invalid('inflight needs instanceIds, a list of instance ids');
        }
        return this.inflight(request.instanceIds);
      default:
        throw invalid(`unknown router request ${JSON.stringify((request as { op?: unknown })?.op)}; expected stats or inflight`);
    }
  }
}
