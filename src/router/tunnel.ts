// WebSocket (any HTTP Upgrade): replay the handshake to an upstream over raw TCP, then pipe bytes both ways.
import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ForwardedRequest } from './headers.ts';
import type { ProxyHost } from './proxy.ts';
import { displayHost } from './proxy.ts';
import type { RouteTarget } from './route-table.ts';
import type { ServiceCounters } from './stats.ts';
import { pickUpstream, type UpstreamState } from './upstreams.ts';

const MAX_ATTEMPTS = 3;
const CONNECT_TIMEOUT_MS = 5_000;
/** Only these mean nothing was sent: the handshake is replayed to another instance. */
const RETRY_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT']);

/** Writes a complete HTTP response on a raw socket, then closes it: the answer to an upgrade that cannot proceed. */
export function rejectUpgrade(socket: Duplex, status: number, reason: string, text: string): void {
  if (socket.destroyed) return;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n` +
      `cache-control: no-store\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
  );
}

/** Reads the status code from the first bytes of an HTTP/1.x response, or 0 if they are not one. */
function peekStatus(chunk: Buffer): number {
  if (chunk.length < 12 || chunk.toString('latin1', 0, 7) !== 'HTTP/1.') return 0;
  const status = Number(chunk.toString('latin1', 9, 12));
  return Number.isInteger(status) ? status : 0;
}

export class Tunnel {
  private upstream: Socket | null = null;
  private state: UpstreamState | null = null;
  private attempts = 0;
  private tried: string | null = null;
  private open = false;
  private closed = false;
  private readonly handshake: Buffer;

  constructor(
    private readonly host: ProxyHost,
    private readonly client: Duplex,
    private readonly head: Buffer,
    req: IncomingMessage,
    private readonly hostName: string,
    private target: RouteTarget,
    private readonly counters: ServiceCounters,
    forwarded: ForwardedRequest,
    private readonly startedAt: number,
    /** called once, when both sides are gone */
    private readonly onEnd: (t: Tunnel) => void,
  ) {
    let text = `${req.method} ${forwarded.path} HTTP/1.1\r\n`;
    const h = forwarded.headers;
    for (let i = 0; i < h.length; i += 2) text += `${h[i]}: ${h[i + 1]}\r\n`;
    this.handshake = Buffer.from(`${text}\r\n`, 'latin1');
  }

  begin(): void {
    this.client.on('error', () => this.close());
    this.client.on('close', () => this.close());
    this.connectUpstream();
  }

  /** Ends both sides now: used when the router stops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const up = this.upstream;
    if (up !== null) {
      this.counters.bytesIn += up.bytesWritten;
      this.counters.bytesOut += up.bytesRead;
      up.destroy();
    }
    this.client.destroy();
    if (this.open) this.counters.websocketsActive--;
    if (this.state !== null) this.host.release(this.state);
    this.state = null;
    this.onEnd(this);
  }

  private connectUpstream(): void {
    const u = pickUpstream(this.target.upstreams, this.host.upstreamStates, this.startedAt, this.tried, null);
    this.tried = u.instanceId;
    this.attempts++;
    const state = this.host.upstreamState(u, this.target.timeouts.connectMs);
    state.inflight++;
    this.state = state;
    const up = connect({ host: u.host, port: u.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.upstream = up;
    let connected = false;
    const timer = setTimeout(() => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), CONNECT_TIMEOUT_MS);
    up.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      if (this.closed) return;
      up.write(this.handshake);
      if (this.head.length > 0) up.write(this.head);
      up.once('data', (chunk: Buffer) => this.onFirstResponseBytes(chunk));
      up.pipe(this.client);
      this.client.pipe(up);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (connected || this.closed) return this.close();
      const code = err.code ?? '';
      // Not connected yet: nothing was sent, so another instance can take the handshake.
      this.upstream = null;
      up.destroy();
      this.host.release(state);
      this.state = null;
      if (RETRY_ERRORS.has(code)) state.markFailed(performance.now());
      if (RETRY_ERRORS.has(code) && this.attempts < MAX_ATTEMPTS) {
        const current = this.host.lookup(this.hostName);
        if (current !== undefined && current.upstreams.length > 0) this.target = current;
        this.connectUpstream();
        return;
      }
      this.counters.upstreamErrors++;
      this.counters.countStatus(502);
      this.counters.latency.record(performance.now() - this.startedAt);
      rejectUpgrade(this.client, 502, 'Bad Gateway', `The app at ${displayHost(this.hostName)} could not be reached.\n`);
      this.closed = true;
      this.onEnd(this);
    });
    up.on('close', () => {
      clearTimeout(timer);
      if (connected) this.close();
    });
  }

  private onFirstResponseBytes(chunk: Buffer): void {
    const status = peekStatus(chunk);
    if (status === 0) return;
    this.counters.countStatus(status);
    this.counters.latency.record(performance.now() - this.startedAt);
    if (status === 101 && !this.closed) {
      this.open = true;
      this.counters.websocketsOpened++;
      this.counters.websocketsActive++;
    }
  }
}
