// WebSocket (any HTTP Upgrade): send the handshake to an upstream; on 101 pipe bytes both ways, else relay the answer.
import { connect, type Socket } from 'node:net';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { forwardResponseHeaders, type ForwardedRequest } from './headers.ts';
import type { ProxyHost } from './proxy.ts';
import { displayHost, displayService } from './proxy.ts';
import type { RouteTarget } from './route-table.ts';
import type { ServiceCounters } from './stats.ts';
import { pickUpstream, type UpstreamState } from './upstreams.ts';

const MAX_ATTEMPTS = 3;
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

/** The status line and headers of an upstream's answer, as raw text to write on the client's socket. */
function responseHead(res: IncomingMessage, headers: string[]): string {
  let text = `HTTP/1.1 ${res.statusCode} ${res.statusMessage ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${text}\r\n`;
}

export class Tunnel {
  private upstream: Socket | null = null;
  private state: UpstreamState | null = null;
  private attempts = 0;
  private tried: string | null = null;
  private open = false;
  private closed = false;
  /** bounds the wait for the upstream's answer to the handshake */
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** the upstream refused the upgrade: its answer is being relayed as an ordinary response */
  private relaying = false;
  private readonly method: string;

  constructor(
    private readonly host: ProxyHost,
    private readonly client: Duplex,
    private readonly head: Buffer,
    req: IncomingMessage,
    private readonly hostName: string,
    private target: RouteTarget,
    private readonly counters: ServiceCounters,
    private readonly forwarded: ForwardedRequest,
    private readonly startedAt: number,
    /** called once, when both sides are gone */
    private readonly onEnd: (t: Tunnel) => void,
  ) {
    this.method = req.method ?? 'GET';
  }

  begin(): void {
    this.client.on('error', () => this.close());
    this.client.on('close', () => this.close());
    this.connectUpstream();
  }

  /** Ends both sides now (used when the router stops); `letClientFinish` lets an answer already written reach the client. */
  close(letClientFinish = false): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    const up = this.upstream;
    if (up !== null) {
      this.counters.bytesIn += up.bytesWritten;
      this.counters.bytesOut += up.bytesRead;
      up.destroy();
    }
    if (!letClientFinish) this.client.destroy();
    if (this.open) this.counters.websocketsActive--;
    if (this.state !== null) this.host.release(this.state);
    this.state = null;
    this.onEnd(this);
  }

  private connectUpstream(): void {
    const u = pickUpstream(this.target, this.host.upstreamStates, this.startedAt, this.tried, null);
    this.tried = u.instanceId;
    this.attempts++;
    const state = this.host.upstreamState(u, this.target.timeouts.connectMs);
    state.inflight++;
    this.state = state;
    const up = connect({ host: u.host, port: u.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.upstream = up;
    let connected = false;
    const timer = setTimeout(() => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), this.target.timeouts.connectMs);
    up.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      if (this.closed) return;
      this.handshake(up);
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
      // While a refusal is relayed, the client's side ends the tunnel once the answer has reached it.
      if (connected && !this.relaying) this.close();
    });
  }

  /**
   * Sends the handshake through Node's HTTP client on the connected socket, so the answer is parsed like any response:
   * a 101 turns into a tunnel; anything else is relayed to the client as an ordinary response and both sides close,
   * so no raw tunnel ever stays open to a backend that refused the upgrade.
   */
  private handshake(up: Socket): void {
    const req = httpRequest({ createConnection: () => up, method: this.method, path: this.forwarded.path, headers: this.forwarded.headers, setHost: false });
    const headerMs = this.target.timeouts.headerMs;
    const timer = (this.handshakeTimer = setTimeout(() => {
      if (this.closed) return;
      this.counters.upstreamErrors++;
      this.countAnswer(504);
      rejectUpgrade(this.client, 504, 'Gateway Timeout', `Service ${displayService(this.target.key)} at ${displayHost(this.hostName)} did not answer the upgrade within ${headerMs / 1000} s.\n`);
      this.close(true);
    }, headerMs));
    // Errors after connecting end the tunnel through the socket's own error and close handlers.
    req.on('error', () => this.close());
    req.on('upgrade', (res: IncomingMessage, socket: Duplex, upgradeHead: Buffer) => {
      clearTimeout(timer);
      if (this.closed) return socket.destroy();
      this.countAnswer(101);
      this.open = true;
      this.counters.websocketsOpened++;
      this.counters.websocketsActive++;
      this.client.write(responseHead(res, res.rawHeaders), 'latin1');
      if (upgradeHead.length > 0) this.client.write(upgradeHead);
      if (this.head.length > 0) socket.write(this.head);
      socket.pipe(this.client);
      this.client.pipe(socket);
    });
    req.on('response', (res: IncomingMessage) => {
      clearTimeout(timer);
      if (this.closed) return;
      this.countAnswer(res.statusCode ?? 502);
      this.relaying = true;
      const headers = forwardResponseHeaders(res.rawHeaders.map((h) => Buffer.from(h, 'latin1')), this.forwarded.requestId);
      // The framing is the router's: the body goes as received, and the end of the connection ends it.
      headers.push('connection', 'close');
      this.client.write(responseHead(res, headers), 'latin1');
      res.on('data', (chunk: Buffer) => {
        if (!this.client.write(chunk)) {
          res.pause();
          this.client.once('drain', () => res.resume());
        }
      });
      res.on('end', () => this.client.end(() => this.close()));
    });
    req.end();
  }

  private countAnswer(status: number): void {
    this.counters.countStatus(status);
    this.counters.latency.record(performance.now() - this.startedAt);
  }
}
