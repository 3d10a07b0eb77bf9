// One proxied HTTP request: dispatch to an upstream pool, stream both bodies, retry safely on connection errors.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Upstream } from '../core/messages.ts';
import { forwardResponseHeaders, type ForwardedRequest } from './headers.ts';
import type { RouteTarget } from './route-table.ts';
import type { ServiceCounters } from './stats.ts';
import { pickUpstream, type UpstreamState } from './upstreams.ts';

/** What an exchange needs from the router, kept narrow so the proxy does not depend on the router's shape. */
export interface ProxyHost {
  /** the current route target for a hostname: retries look again, so they follow a table swapped meanwhile */
  lookup(host: string): RouteTarget | undefined;
  /** live upstream states by instance id, for picking */
  readonly upstreamStates: ReadonlyMap<string, UpstreamState>;
  /** the state for an upstream of the current table, created on first use */
  upstreamState(u: Upstream): UpstreamState;
  /** one request or websocket on this upstream is over */
  release(state: UpstreamState): void;
}

/** Retries after the first attempt: enough to step over an instance or two that just went away. */
const MAX_ATTEMPTS = 3;

/** Failures where no byte of the request reached an application: always safe to send elsewhere. */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  // a pool closed by a table swap between picking and dispatching
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

/** The connection dropped before any response byte: the upstream may have seen the request. */
const RESET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

const IDEMPOTENT_SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

const PLAIN_HEADERS = {
  'content-type': 'text/plain; charset=utf-8',
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

/** A short plain-text answer from the router itself (404, 502, 503, 504). */
export function sendPlain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { ...PLAIN_HEADERS, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A hostname fit to echo in a plain-text body: the client chose it, so keep it short. */
export function displayHost(host: string): string {
  if (host === '') return 'this hostname (the request has no Host header)';
  return host.length > 100 ? `${host.slice(0, 100)}…` : host;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * Implements undici's dispatch handler (the callback interface the pool drives natively: raw header buffers, no
 * per-request wrapping). One instance per client request, reused across retry attempts.
 */
export class HttpExchange implements Dispatcher.DispatchHandler {
  private upstream: UpstreamState | null = null;
  private attempts = 0;
  private tried1: string | null = null;
  private tried2: string | null = null;
  private abortUpstream: ((err?: Error) => void) | null = null;
  private resumeUpstream: (() => void) | null = null;
  /** a response byte arrived on the current attempt: too late to retry */
  private upstreamResponded = false;
  /** response headers went to the client */
  private responded = false;
  private done = false;
  private clientGone = false;
  private readonly onClientClose = (): void => {
    if (this.done) return;
    this.clientGone = true;
    this.abortUpstream?.(new Error('client closed the connection'));
  };
  private readonly onDrain = (): void => {
    this.resumeUpstream?.();
  };

  constructor(
    private readonly host: ProxyHost,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly hostName: string,
    private target: RouteTarget,
    private readonly counters: ServiceCounters,
    private readonly forwarded: ForwardedRequest,
    private readonly startedAt: number,
  ) {}

  begin(): void {
    this.res.once('close', this.onClientClose);
    this.attempt();
  }

  private attempt(): void {
    const u = pickUpstream(this.target.upstreams, this.host.upstreamStates, this.startedAt, this.tried1, this.tried2);
    if (this.attempts === 0) this.tried1 = u.instanceId;
    else this.tried2 = u.instanceId;
    this.attempts++;
    const state = this.host.upstreamState(u);
    state.inflight++;
    this.upstream = state;
    this.abortUpstream = null;
    this.upstreamResponded = false;
    // dispatch reports even synchronous failures (a closed pool) through onError, so there is nothing to catch here.
    state.dispatcher().dispatch(
      {
        path: this.req.url ?? '/',
        method: this.req.method ?? 'GET',
        headers: this.forwarded.headers,
        // Bodyless requests pass null: undici then keeps the connection pipelinable and needs no stream.
        body: this.forwarded.hasBody ? this.req : null,
      },
      this,
    );
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.clientGone) abort(new Error('client closed the connection'));
  }

  onResponseStarted(): void {
    this.upstreamResponded = true;
  }

  onBodySent(chunk: Buffer | number): void {
    this.counters.bytesIn += typeof chunk === 'number' ? chunk : chunk.length;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.upstreamResponded = true;
    // 1xx informational answers (103 Early Hints) are not relayed; the final response follows on the same request.
    if (statusCode < 200) return true;
    this.resumeUpstream = resume;
    const headers = forwardResponseHeaders(rawHeaders);
    // A header Node refuses to write throws here; undici then aborts and onError answers 502.
    if (statusText) this.res.writeHead(statusCode, statusText, headers);
    else this.res.writeHead(statusCode, headers);
    this.responded = true;
    this.counters.countStatus(statusCode);
    this.counters.latency.record(performance.now() - this.startedAt);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.counters.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    // The client reads slower than the upstream sends: pause the upstream socket until the client drains.
    this.res.once('drain', this.onDrain);
    return false;
  }

  onComplete(): void {
    this.finish();
    this.res.end();
  }

  onError(err: Error): void {
    const state = this.upstream;
    const code = errorCode(err);
    if (state !== null && CONNECT_ERRORS.has(code) && code !== 'UND_ERR_CLOSED' && code !== 'UND_ERR_DESTROYED') {
      state.markFailed(performance.now());
    }
    if (this.canRetry(code)) {
      this.releaseUpstream();
      // Look again: if the table changed meanwhile (an instance left), the retry follows the new one.
      const current = this.host.lookup(this.hostName);
      if (current !== undefined && current.upstreams.length > 0) this.target = current;
      this.attempt();
      return;
    }
    this.finish();
    if (this.clientGone) return;
    if (this.responded) {
      // Mid-body: the status is gone, so the only honest signal left is cutting the connection.
      this.res.destroy(err);
      return;
    }
    this.counters.upstreamErrors++;
    const timeout = code === 'UND_ERR_HEADERS_TIMEOUT';
    const status = timeout ? 504 : 502;
    this.counters.countStatus(status);
    this.counters.latency.record(performance.now() - this.startedAt);
    const text = timeout
      ? `The app at ${displayHost(this.hostName)} did not answer in time.\n`
      : `The app at ${displayHost(this.hostName)} could not be reached.\n`;
    if (this.res.headersSent) this.res.destroy(err);
    else sendPlain(this.res, status, text);
  }

  /**
   * Safe to send again: nothing was answered, the body (if any) was never read from the client, and either nothing
   * reached an application (connection refused) or the method is safe to repeat, or the request was cut before its
   * body started, so the application cannot have acted on a complete request.
   */
  private canRetry(code: string): boolean {
    if (this.responded || this.upstreamResponded || this.clientGone || this.attempts >= MAX_ATTEMPTS) return false;
    const connect = CONNECT_ERRORS.has(code);
    if (!connect && !RESET_ERRORS.has(code)) return false;
    if (this.forwarded.hasBody) return !this.req.readableDidRead && !this.req.destroyed;
    return connect || IDEMPOTENT_SAFE.has(this.req.method ?? '');
  }

  private releaseUpstream(): void {
    const state = this.upstream;
    if (state !== null) {
      this.upstream = null;
      this.host.release(state);
    }
  }

  private finish(): void {
    this.done = true;
    this.releaseUpstream();
    this.res.off('close', this.onClientClose);
  }
}
