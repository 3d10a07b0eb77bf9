// The Bus over NATS for cluster mode: JSON payloads, queue groups, request/reply with coded errors, reconnecting
// forever so a NATS outage heals without a restart, and its connection events reported through onStatus.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import {
  connect,
  credsAuthenticator,
  InvalidArgumentError,
  RequestError,
  TimeoutError,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  type Subscription as NatsSubscription,
} from '@nats-io/transport-node';
import { EnjinError } from '../core/errors.ts';
import { componentLogger } from '../log/logger.ts';
import type { Bus, BusMessage, BusStatus, RequestMeta, SubscribeOptions, Subscription } from './bus.ts';

export interface NatsBusOptions {
  /** nats://[user:password@]host:port, or tls://…; several servers separated by commas */
  url: string;
  /** a CA bundle to verify the server's TLS certificate with (turns TLS on) */
  tlsCaFile?: string;
  /** a NATS credentials file (JWT + nkey seed), as `nsc` writes it */
  credsFile?: string;
  /** the client name the server's monitoring shows */
  name?: string;
  /** how long the first connection may take before connect() gives up (default 10 s); later outages are waited out */
  connectTimeoutMs?: number;
  /** how often to ping the server; a silent link (a partition, not a closed socket) is noticed after ~2 of these */
  pingIntervalMs?: number;
  /** pause between reconnect attempts (default 1 s) */
  reconnectWaitMs?: number;
}

/** What a reply carries on the wire: the answer, or the responder's error as data. */
type WireReply = { data: unknown } | { error: { code: string; message: string; status: number; details?: unknown } };

const log = componentLogger('bus.nats');

/** The URL with any password replaced, fit for logs and error messages. */
export function redactUrl(url: string): string {
  return url
    .split(',')
    .map((one) => one.trim().replace(/^([a-z]+:\/\/[^:/@]*:)[^@/]*@/i, '$1***@'))
    .join(',');
}

/** Splits user/password out of the URL(s): the client wants them as options and the servers without them. */
function serversAndAuth(url: string): { servers: string[]; hosts: string[]; user?: string; pass?: string; tls: boolean } {
  const servers: string[] = [];
  const hosts: string[] = [];
  let user: string | undefined;
  let pass: string | undefined;
  let tls = false;
  for (const raw of url.split(',').map((s) => s.trim()).filter(Boolean)) {
    let parsed: URL;
    try {
      parsed = new URL(raw.includes('://') ? raw : `nats://${raw}`);
    } catch (err) {
      throw new EnjinError('invalid_config', `the NATS URL ${redactUrl(raw)} is malformed; write it as nats://[user:password@]host:4222`, { status: 400, cause: err });
    }
    if (parsed.username && user === undefined) {
      user = decodeURIComponent(parsed.username);
      pass = decodeURIComponent(parsed.password);
    }
    if (parsed.protocol === 'tls:') tls = true;
    const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
    hosts.push(host);
    servers.push(`${host.includes(':') ? `[${host}]` : host}:${parsed.port || '4222'}`);
  }
  if (servers.length === 0) throw new EnjinError('invalid_config', 'the NATS URL is empty; pass --nats nats://HOST:4222', { status: 400 });
  return { servers, hosts, user, pass, tls };
}

function encode(data: unknown): string {
  return JSON.stringify(data ?? null);
}

export class NatsBus implements Bus {
  readonly #nc: NatsConnection;
  readonly #url: string;
  readonly #listeners = new Set<(status: BusStatus) => void>();
  readonly #subscriptions = new Set<NatsSubscription>();
  #closed = false;
  /** 'disconnected' is said once per outage, however many attempts the client makes */
  #down = false;

  private constructor(nc: NatsConnection, url: string) {
    this.#nc = nc;
    this.#url = url;
    void this.#watchStatus();
  }

  /**
   * Connects, retrying until `connectTimeoutMs`: NATS may start a moment after enjin. After that first connection
   * the client reconnects forever. Throws EnjinError bus_unavailable (503) if no server answered in time.
   */
  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const shown = redactUrl(opts.url);
    const { servers, hosts, user, pass, tls } = serversAndAuth(opts.url);
    const options: NodeConnectionOptions = {
      servers,
      name: opts.name,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectWaitMs ?? 1_000,
      pingInterval: opts.pingIntervalMs ?? 10_000,
      maxPingOut: 2,
    };
    if (user !== undefined) {
      options.user = user;
      options.pass = pass;
    }
    if (opts.tlsCaFile !== undefined || tls) {
      options.tls = opts.tlsCaFile === undefined ? {} : { caFile: opts.tlsCaFile };
      // The client names no TLS server when dialling an IP address, and Node then checks the certificate against
      // 'localhost'; with one server given by IP, check it against that IP (certificates for IPs carry it as a SAN).
      if (hosts.length === 1 && isIP(hosts[0])) Object.assign(options.tls, { host: hosts[0] });
    }
    if (opts.credsFile !== undefined) {
      let creds: Uint8Array;
      try {
        creds = readFileSync(opts.credsFile);
      } catch (err) {
        throw new EnjinError('invalid_config', `cannot read the NATS credentials file ${opts.credsFile}: ${(err as Error).message}`, { status: 400, cause: err });
      }
      options.authenticator = credsAuthenticator(creds);
    }

    const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    // The handshake bound serves every later reconnect too; the last first attempt may overrun the deadline by it.
    options.timeout = Math.min(connectTimeoutMs, 5_000);
    const deadline = Date.now() + connectTimeoutMs;
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        const nc = await connect(options);
        log.info({ url: shown, server: nc.getServer(), attempt }, 'connected to NATS');
        return new NatsBus(nc, shown);
      } catch (err) {
        lastError = err;
        const message = (err as Error)?.message ?? String(err);
        // Wrong credentials or TLS will not fix themselves: say so now instead of retrying.
        if (/auth|permission|tls|certificate|ssl/i.test(message) || Date.now() + 250 >= deadline) break;
        log.debug({ url: shown, attempt, err: message }, 'NATS not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
      }
    }
    const cause = (lastError as Error)?.message ?? String(lastError);
    throw new EnjinError(
      'bus_unavailable',
      `cannot connect to NATS at ${shown} (${cause}); check that nats-server runs there and is reachable from this host, and that the URL's user/password, --nats-creds and --nats-tls-ca match its configuration`,
      { status: 503, cause: lastError },
    );
  }

  /** The URL this bus connects to, password redacted. */
  get url(): string {
    return this.#url;
  }

  publish(subject: string, data: unknown): void {
    if (this.#closed) return;
    const payload = encode(data);
    try {
      this.#nc.publish(subject, payload);
    } catch (err) {
      // Fire-and-forget, but never silently: an oversized message or a bad subject is a fault to see.
      log.error({ err, subject, bytes: Buffer.byteLength(payload) }, this.#tooLarge(err, subject, payload) ?? 'publish failed');
    }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: SubscribeOptions = {}): Subscription {
    return this.#subscribe(subject, opts, (msg) => {
      const data = this.#decode(msg);
      if (data === undefined) return;
      try {
        handler({ subject: msg.subject, data: data.value, sender: null });
      } catch (err) {
        log.warn({ err, subject: msg.subject }, 'bus subscriber threw');
      }
    });
  }

  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts: SubscribeOptions = {}): Subscription {
    if (subject.includes('*') || subject.includes('>')) throw new Error('NatsBus.handle takes a concrete subject');
    return this.#subscribe(subject, opts, (msg) => {
      // A plain publish on a handled subject has nobody to answer to.
      if (!msg.reply) return;
      const data = this.#decode(msg);
      if (data === undefined) return;
      Promise.resolve()
        .then(() => responder(data.value, { subject: msg.subject, sender: null }))
        .then(
          (reply): WireReply => ({ data: reply ?? null }),
          (err: unknown): WireReply => {
            if (err instanceof EnjinError) return { error: { ...err.toJSON(), status: err.status } };
            return { error: { code: 'internal', message: (err as Error)?.message ?? String(err), status: 500 } };
          },
        )
        .then((wire) => {
          const payload = JSON.stringify(wire);
          let sent: boolean;
          try {
            sent = msg.respond(payload);
          } catch (err) {
            const tooLarge = this.#tooLarge(err, msg.subject, payload);
            if (tooLarge === null) throw err;
            // The requester would only see a timeout: tell it why instead.
            log.error({ subject: msg.subject, bytes: Buffer.byteLength(payload) }, tooLarge);
            sent = msg.respond(JSON.stringify({ error: { code: 'internal', message: `the answer ${tooLarge.slice('the message '.length)}`, status: 500 } }));
          }
          if (!sent) log.warn({ subject: msg.subject }, 'could not answer a request: the connection is closed');
        })
        .catch((err: unknown) => log.warn({ err, subject: msg.subject }, 'could not answer a request'));
    });
  }

  async request<T = unknown>(subject: string, data: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closed) throw new EnjinError('bus_closed', 'the bus is closed', { status: 503 });
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const payload = encode(data);
    let msg: Msg;
    try {
      msg = await this.#nc.request(subject, payload, { timeout: timeoutMs });
    } catch (err) {
      const tooLarge = this.#tooLarge(err, subject, payload);
      if (tooLarge !== null) throw new EnjinError('internal', tooLarge, { status: 500, cause: err });
      if (err instanceof TimeoutError) throw new EnjinError('bus_timeout', `no answer on ${subject} within ${timeoutMs} ms`, { status: 504 });
      if (err instanceof RequestError && err.isNoResponders()) {
        throw new EnjinError('bus_no_responder', `nothing answers on ${subject}; is that component running?`, { status: 503 });
      }
      if (this.#closed || this.#nc.isClosed()) throw new EnjinError('bus_closed', 'the bus is closed', { status: 503, cause: err });
      throw new EnjinError('bus_unavailable', `request on ${subject} failed over NATS at ${this.#url}: ${(err as Error)?.message ?? String(err)}`, { status: 503, cause: err });
    }
    let wire: WireReply;
    try {
      wire = msg.json<WireReply>();
    } catch (err) {
      throw new EnjinError('internal', `the answer on ${subject} is not JSON; is the responder an enjin of another version?`, { status: 502, cause: err });
    }
    if ('error' in wire && wire.error) throw EnjinError.fromJSON(wire.error, typeof wire.error.status === 'number' ? wire.error.status : 500);
    return ('data' in wire ? wire.data ?? null : null) as T;
  }

  onStatus(listener: (status: BusStatus) => void): Subscription {
    this.#listeners.add(listener);
    return { unsubscribe: () => void this.#listeners.delete(listener) };
  }

  /** Drains: messages already received are handled and published ones flushed, then the connection closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    if (this.#nc.isClosed()) return;
    // A drain waits for the server; during an outage it would wait forever, so it gets a bound.
    let timer: NodeJS.Timeout | undefined;
    const bounded = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 5_000)));
    try {
      const outcome = await Promise.race([this.#nc.drain().then(() => 'drained' as const), bounded]);
      if (outcome === 'timeout') {
        log.warn({ url: this.#url }, 'NATS drain did not finish in 5 s; closing without it');
        await this.#nc.close();
      }
    } catch (err) {
      log.warn({ err, url: this.#url }, 'NATS drain failed; closing');
      if (!this.#nc.isClosed()) await this.#nc.close();
    } finally {
      clearTimeout(timer);
    }
  }

  #subscribe(subject: string, opts: SubscribeOptions, onMessage: (msg: Msg) => void): Subscription {
    if (this.#closed) return { unsubscribe: () => undefined };
    const sub = this.#nc.subscribe(subject, {
      ...(opts.queue === undefined ? {} : { queue: opts.queue }),
      callback: (err, msg) => {
        if (err) {
          log.warn({ err, subject }, 'subscription error');
          return;
        }
        if (this.#closed && !this.#nc.isDraining()) return;
        onMessage(msg);
      },
    });
    this.#subscriptions.add(sub);
    return {
      unsubscribe: () => {
        this.#subscriptions.delete(sub);
        if (this.#nc.isClosed() || sub.isClosed()) return;
        try {
          sub.unsubscribe();
        } catch (err) {
          log.warn({ err, subject }, 'unsubscribe failed');
        }
      },
    };
  }

  /** The message for a payload over the server's max_payload, or null for any other error. */
  #tooLarge(err: unknown, subject: string, payload: string): string | null {
    if (!(err instanceof InvalidArgumentError) || !/max_payload/.test(err.message)) return null;
    const limit = this.#nc.info?.max_payload;
    return `the message on ${subject} is ${Buffer.byteLength(payload)} bytes, over the NATS server's max_payload${limit ? ` of ${limit}` : ''}; raise max_payload in the nats-server configuration`;
  }

  #decode(msg: Msg): { value: unknown } | undefined {
    try {
      return { value: msg.data.length === 0 ? null : msg.json<unknown>() };
    } catch (err) {
      log.warn({ err, subject: msg.subject }, 'dropped a bus message that is not JSON');
      return undefined;
    }
  }

  async #watchStatus(): Promise<void> {
    try {
      for await (const status of this.#nc.status()) {
        switch (status.type) {
          case 'disconnect':
            log.warn({ url: this.#url, server: status.server }, 'disconnected from NATS; reconnecting');
            if (!this.#down) {
              this.#down = true;
              this.#emit('disconnected');
            }
            break;
          case 'reconnect':
            log.info({ url: this.#url, server: status.server }, 'reconnected to NATS');
            if (this.#down) {
              this.#down = false;
              this.#emit('reconnected');
            }
            break;
          case 'error':
            log.warn({ err: status.error, url: this.#url }, 'NATS reported an error');
            break;
          case 'staleConnection':
            log.warn({ url: this.#url }, 'NATS connection went silent; reconnecting');
            break;
          default:
            break;
        }
      }
    } catch (err) {
      log.warn({ err, url: this.#url }, 'NATS status stream failed');
    }
    if (!this.#closed) log.error({ url: this.#url }, 'NATS connection closed on its own; this bus is unusable until enjin restarts');
  }

  #emit(status: BusStatus): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(status);
      } catch (err) {
        log.warn({ err, status }, 'bus status listener threw');
      }
    }
  }
}
