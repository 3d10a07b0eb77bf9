// One proxied HTTP request: dispatch to an upstream pool, stream both bodies, retry safely on connection errors.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Upstream } from '../core/messages.ts';
import { forwardResponseHeaders, type ForwardedRequest } from './headers.ts';
import type { RouterLimits } from './limits.ts';
import { BodyReader, type ReadyBody } from './request-body.ts';
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
  upstreamState(u: Upstream, connectMs: number): UpstreamState;
  /** one request or websocket on this upstream is over */
  release(state: UpstreamState): void;
  readonly limits: RouterLimits;
  /** counts a request from this client address as in flight upstream; false if it already has too many */
  admitClient(address: string): boolean;
  leaveClient(address: string): void;
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

/**
 * A short plain-text answer from the router itself (400, 404, 408, 429, 502, 503, 504); `close` ends the connection.
 * It carries the request's id, so a user reporting a 502 can quote it.
 */
export function sendPlain(res: ServerResponse, status: number, text: string, requestId: string, close = false): void {
  const headers: Record<string, string | number> = { ...PLAIN_HEADERS, 'content-length': Buffer.byteLength(text), 'x-request-id': requestId };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(text);
}

/** How a service is named in the router's own answers: `web (project hello)` from the key `default/hello/web`. */
export function displayService(key: string): string {
  const [workspace, project, service] = key.split('/');
  if (service === undefined) return key;
  return workspace === 'default' ? `${service} (project ${project})` : `${service} (project ${project}, workspace ${workspace})`;
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
  /** request body bytes written to the current attempt's connection */
  private bodySent = 0;
  /** response headers went to the client */
  private responded = false;
  private done = false;
  private clientGone = false;
  /** the request body as received (null: none), sent again as is on a retry */
  private body: Buffer | Readable | null = null;
  private reader: BodyReader | null = null;
  /** counted against the client address's in-flight cap */
  private admitted = false;
  private readonly clientAddress: string;
  private readonly onClientClose = (): void => {
    if (this.done) return;
    this.clientGone = true;
    this.reader?.stop();
    this.abortUpstream?.(new Error('client closed the connection'));
    if (this.upstream === null) this.finish();
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
  ) {
    this.clientAddress = req.socket.remoteAddress ?? '';
  }

  /**
   * A request with a body takes no upstream connection until the body has arrived (or a buffer's worth of it): a
   * client that sends slowly then holds only its own connection, and is answered 408 if it falls below the minimum rate.
   */
  begin(): void {
    this.res.once('close', this.onClientClose);
    if (!this.forwarded.hasBody) return this.dispatchFirst();
    this.reader = new BodyReader(this.req, this.host.limits, (b) => this.bodyReady(b), () => this.bodyTooSlow());
    this.reader.start();
  }

  private bodyReady(ready: ReadyBody): void {
    if (this.done) return;
    this.body = ready.body;
    // Receiving may have taken a while: follow a table swapped meanwhile.
    const current = this.host.lookup(this.hostName);
    if (current !== undefined && current.upstreams.length > 0) this.target = current;
    this.dispatchFirst();
  }

  private dispatchFirst(): void {
    if (!this.host.admitClient(this.clientAddress)) {
      this.finish();
      this.answer(429, `Too many requests from your address are in progress at ${displayHost(this.hostName)}; retry when some have finished.\n`, true);
      return;
    }
    this.admitted = true;
    this.attempt();
  }

  private bodyTooSlow(): void {
    if (this.done) return;
    const abort = this.abortUpstream;
    this.finish();
    abort?.(new Error('the client sent its request body too slowly'));
    if (this.responded) {
      this.res.destroy();
      return;
    }
    this.answer(408, 'The request body arrived too slowly; send it faster or in one go.\n', true);
  }

  /** The router's own answer; `close` ends the connection (the rest of the request will not be read). */
  private answer(status: number, text: string, close = false): void {
    this.counters.countStatus(status);
    this.counters.latency.record(performance.now() - this.startedAt);
    if (this.res.headersSent || this.res.destroyed) this.res.destroy();
    else sendPlain(this.res, status, text, this.forwarded.requestId, close);
  }

  private attempt(): void {
    const u = pickUpstream(this.target, this.host.upstreamStates, this.startedAt, this.tried1, this.tried2);
    if (this.attempts === 0) this.tried1 = u.instanceId;
    else this.tried2 = u.instanceId;
    this.attempts++;
    const state = this.host.upstreamState(u, this.target.timeouts.connectMs);
    state.inflight++;
    this.upstream = state;
    this.abortUpstream = null;
    this.upstreamResponded = false;
    this.bodySent = 0;
    // dispatch reports even synchronous failures (a closed pool) through onError, so there is nothing to catch here.
    state.dispatcher().dispatch(
      {
        path: this.forwarded.path,
        method: this.req.method ?? 'GET',
        headers: this.forwarded.headers,
        // Bodyless requests pass null: undici then keeps the connection pipelinable and needs no stream.
        body: this.body,
        headersTimeout: this.target.timeouts.headerMs,
        bodyTimeout: this.target.timeouts.idleMs,
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
    const n = typeof chunk === 'number' ? chunk : chunk.length;
    this.bodySent += n;
    this.counters.bytesIn += n;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.upstreamResponded = true;
    // 1xx informational answers (103 Early Hints) are not relayed; the final response follows on the same request.
    if (statusCode < 200) return true;
    this.resumeUpstream = resume;
    const headers = forwardResponseHeaders(rawHeaders, this.forwarded.requestId);
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
    if (this.done) return; // already answered (a slow body's 408) or the client left
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
    const t = this.target.timeouts;
    const service = displayService(this.target.key);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      this.answer(504, `Service ${service} at ${displayHost(this.hostName)} did not answer within ${seconds(t.headerMs)}.\n`);
    } else if (code === 'UND_ERR_CONNECT_TIMEOUT') {
      this.answer(504, `Service ${service} at ${displayHost(this.hostName)} did not accept a connection within ${seconds(t.connectMs)}.\n`);
    } else if (code === 'UND_ERR_BODY_TIMEOUT') {
      this.answer(504, `Service ${service} at ${displayHost(this.hostName)} stopped sending for ${seconds(t.idleMs)}.\n`);
    } else {
      this.answer(502, `The app at ${displayHost(this.hostName)} could not be reached.\n`);
    }
  }

  /**
   * Safe to send again: nothing was answered, the body (if any) can be sent again, and either nothing reached an
   * application (connection refused), or the request was cut before its body was written, or the method is safe to repeat.
   */
  private canRetry(code: string): boolean {
    if (this.responded || this.upstreamResponded || this.clientGone || this.attempts >= MAX_ATTEMPTS) return false;
    const connect = CONNECT_ERRORS.has(code);
    if (!connect && !RESET_ERRORS.has(code)) return false;
    // A buffered body can be sent again whole; a streamed one only if none of it was taken yet.
    const body = this.body;
    if (body !== null && !Buffer.isBuffer(body) && (body.readableDidRead || body.destroyed)) return false;
    // A body not yet written means the application cannot have acted on a complete request.
    if (body !== null && this.bodySent === 0) return true;
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
    this.reader?.stop();
    this.releaseUpstream();
    if (this.admitted) {
      this.admitted = false;
      this.host.leaveClient(this.clientAddress);
    }
    this.res.off('close', this.onClientClose);
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
