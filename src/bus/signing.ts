// Signed envelopes over any Bus: what a process sends carries its id and an Ed25519 signature, what it receives is
// checked against the keys ring 0 admitted, so a receiver knows which node spoke (BusMessage.sender).
import { sign, verify, type KeyObject } from 'node:crypto';
import { EnjinError } from '../core/errors.ts';
import { componentLogger, type Logger } from '../log/logger.ts';
import type { Bus, BusMessage, BusStatus, RequestMeta, SubscribeOptions, Subscription } from './bus.ts';
import type { Identity } from './identity.ts';

/** The keys this side trusts, by sender id. A node's key is admitted when it joins. */
export interface KeyRing {
  publicKey(id: string): KeyObject | null;
  /**
   * A sender this ring does not know presented its public key (base64 SPKI DER) with the message: the key to verify it
   * with if this ring trusts it on first use (a controller rebuilding its store from the nodes, for a bounded time),
   * else null. The signature is still checked, with the key returned.
   */
  offered?(id: string, publicKeyB64: string): KeyObject | null;
  /** a message signed with a key `offered` returned was verified: the ring may bind that key to the id now */
  confirmed?(id: string, publicKeyB64: string): void;
}

/** What travels on the inner bus for every publish, request and reply of a SignedBus with an identity. */
export interface Envelope {
  enjin: 1;
  from: string;
  /** milliseconds since the epoch, when it was signed */
  at: number;
  /** the payload as JSON text: what is signed is exactly what is read */
  body: string;
  /** base64 Ed25519 signature over the subject (or the request it answers), from, at and body */
  sig: string;
  /** the sender's public key (base64 SPKI DER), when it presents it: only read by a ring that trusts on first use */
  key?: string;
}

export type RejectReason = 'unknownKey' | 'badSignature' | 'unsigned' | 'stale';

export interface SignedBusOptions {
  /** signs what this side sends; without one, payloads go out as they are (unsigned) */
  identity?: Pick<Identity, 'id' | 'privateKey'> & { publicKey?: KeyObject; publicKeyB64?: string } | null;
  /**
   * send the identity's public key with every message (it needs identity.publicKeyB64). Nodes do: a controller that
   * lost its store can admit them again during the time-boxed window of `--recover-from-nodes`.
   */
  presentKey?: boolean;
  /** verifies what this side receives; without one, envelopes are opened and their claimed `from` reported */
  keyring?: KeyRing | null;
  /** close() closes the inner bus too (default true); false when several wrappers share one inner bus */
  ownsInner?: boolean;
  /** how far `at` may be from this side's clock (default 5 minutes): a replay of an old message is refused */
  maxSkewMs?: number;
  /** at most one warning per sender per this long (default 60 s); the counters count every rejection */
  warnEveryMs?: number;
  now?: () => number;
  /** where rejections are reported (default the bus.signing component logger) */
  logger?: Logger;
}

export function isEnvelope(data: unknown): data is Envelope {
  if (typeof data !== 'object' || data === null) return false;
  const e = data as Record<string, unknown>;
  return e.enjin === 1 && typeof e.from === 'string' && typeof e.at === 'number' && typeof e.body === 'string' && typeof e.sig === 'string';
}

/**
 * The signed bytes. A JSON array leaves no ambiguity between fields. A reply is bound to the request it answers (its
 * subject and signature), so an old reply replayed to a new request does not verify.
 */
function signedBytes(scope: { subject: string; replyTo?: string }, from: string, at: number, body: string): Buffer {
  const head = scope.replyTo === undefined ? ['enjin/1', scope.subject] : ['enjin/1 reply', scope.subject, scope.replyTo];
  return Buffer.from(JSON.stringify([...head, from, at, body]));
}

const REASONS: Record<RejectReason, string> = {
  unknownKey: 'signed by a key this side has not admitted (a node must join before it speaks)',
  badSignature: 'its signature does not match its sender and content (forged, tampered, or claiming another id)',
  unsigned: 'it is not signed (the sender runs without an identity)',
  stale: 'it was signed too long ago or in the future (replayed, or a clock is off by more than the allowed skew)',
};

type Opened = { ok: true; data: unknown; sender: string | null } | { ok: false; reason: RejectReason; claimed: string | null };

/** Wraps any Bus so that everything sent is signed and everything received is verified. */
export class SignedBus implements Bus {
  /** rejected incoming messages (and replies) by reason, since this bus was made */
  readonly rejected: Record<RejectReason, number> = { unknownKey: 0, badSignature: 0, unsigned: 0, stale: 0 };
  readonly #inner: Bus;
  readonly #identity: SignedBusOptions['identity'];
  readonly #presentKey: string | null;
  readonly #keyring: KeyRing | null;
  readonly #ownsInner: boolean;
  readonly #maxSkewMs: number;
  readonly #warnEveryMs: number;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #subscriptions = new Set<Subscription>();
  /** last warning per claimed sender, and how many rejections were not logged since */
  readonly #warned = new Map<string, { at: number; suppressed: number }>();
  #closed = false;

  constructor(inner: Bus, opts: SignedBusOptions = {}) {
    this.#inner = inner;
    this.#identity = opts.identity ?? null;
    this.#presentKey = opts.presentKey ? opts.identity?.publicKeyB64 ?? null : null;
    if (opts.presentKey && !this.#presentKey) throw new Error('SignedBus: presentKey needs identity.publicKeyB64');
    this.#keyring = opts.keyring ?? null;
    this.#ownsInner = opts.ownsInner ?? true;
    this.#maxSkewMs = opts.maxSkewMs ?? 5 * 60_000;
    this.#warnEveryMs = opts.warnEveryMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? componentLogger('bus.signing');
  }

  publish(subject: string, data: unknown): void {
    if (this.#closed) return;
    this.#inner.publish(subject, this.#seal({ subject }, data));
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: SubscribeOptions = {}): Subscription {
    const inner = this.#inner.subscribe(
      subject,
      (msg) => {
        if (this.#closed) return;
        const opened = this.#open({ subject: msg.subject }, msg.data);
        if (!opened.ok) return this.#reject(opened, msg.subject);
        handler({ subject: msg.subject, data: opened.data, sender: opened.sender });
      },
      opts,
    );
    return this.#track(inner);
  }

  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts: SubscribeOptions = {}): Subscription {
    if (subject.includes('*') || subject.includes('>')) throw new Error('SignedBus.handle takes a concrete subject');
    const inner = this.#inner.handle(
      subject,
      async (data, meta) => {
        const opened = this.#open({ subject: meta.subject }, data);
        if (!opened.ok) {
          this.#reject(opened, meta.subject);
          // A request is answered even when refused: the requester learns why instead of waiting for a timeout.
          throw new EnjinError('bus_rejected', `the request on ${meta.subject} was refused: ${REASONS[opened.reason]}`, { status: 401 });
        }
        const reply = await responder(opened.data, { subject: meta.subject, sender: opened.sender });
        return this.#seal({ subject: meta.subject, replyTo: isEnvelope(data) ? data.sig : '' }, reply);
      },
      opts,
    );
    return this.#track(inner);
  }

  async request<T = unknown>(subject: string, data: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closed) throw new EnjinError('bus_closed', 'the bus is closed', { status: 503 });
    const sealed = this.#seal({ subject }, data);
    const answer = await this.#inner.request(subject, sealed, opts);
    const opened = this.#open({ subject, replyTo: isEnvelope(sealed) ? sealed.sig : '' }, answer);
    if (!opened.ok) {
      this.#reject(opened, subject);
      throw new EnjinError('bus_rejected', `the answer on ${subject} was refused: ${REASONS[opened.reason]}`, { status: 502 });
    }
    return opened.data as T;
  }

  onStatus(listener: (status: BusStatus) => void): Subscription {
    return this.#inner.onStatus(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const sub of this.#subscriptions) sub.unsubscribe();
    this.#subscriptions.clear();
    if (this.#ownsInner) await this.#inner.close();
  }

  #track(inner: Subscription): Subscription {
    this.#subscriptions.add(inner);
    return {
      unsubscribe: () => {
        this.#subscriptions.delete(inner);
        inner.unsubscribe();
      },
    };
  }

  #seal(scope: { subject: string; replyTo?: string }, data: unknown): unknown {
    if (!this.#identity) return data ?? null;
    const from = this.#identity.id;
    const at = this.#now();
    const body = JSON.stringify(data ?? null);
    const sig = sign(null, signedBytes(scope, from, at, body), this.#identity.privateKey).toString('base64');
    const envelope: Envelope = { enjin: 1, from, at, body, sig };
    if (this.#presentKey) envelope.key = this.#presentKey;
    return envelope;
  }

  #open(scope: { subject: string; replyTo?: string }, data: unknown): Opened {
    if (!isEnvelope(data)) return this.#keyring ? { ok: false, reason: 'unsigned', claimed: null } : { ok: true, data, sender: null };
    const claimed = data.from;
    if (this.#keyring) {
      // A presented key is used only when the ring knows nothing of the sender and takes it; a known sender's own key
      // always wins, so presenting another key never impersonates a node already admitted.
      let key = this.#keyring.publicKey(claimed) ?? (claimed === this.#identity?.id ? this.#identity.publicKey ?? null : null);
      let presented: string | null = null;
      if (key === null && typeof data.key === 'string' && this.#keyring.offered) {
        key = this.#keyring.offered(claimed, data.key);
        presented = key ? data.key : null;
      }
      if (key === null) return { ok: false, reason: 'unknownKey', claimed };
      let good = false;
      try {
        good = verify(null, signedBytes(scope, claimed, data.at, data.body), key, Buffer.from(data.sig, 'base64'));
      } catch (err) {
        // A key of the wrong type in the ring, say: the message cannot be trusted, and the cause is worth a line.
        this.#log.warn({ err, sender: claimed, subject: scope.subject }, 'signature check failed');
      }
      if (!good) return { ok: false, reason: 'badSignature', claimed };
      if (Math.abs(this.#now() - data.at) > this.#maxSkewMs) return { ok: false, reason: 'stale', claimed };
      // Bound only once a message proved the sender holds the private key: a forger cannot claim an id first.
      if (presented !== null) this.#keyring.confirmed?.(claimed, presented);
    }
    try {
      return { ok: true, data: JSON.parse(data.body), sender: claimed };
    } catch {
      // Signed but not JSON: a broken sender, not a readable message.
      return { ok: false, reason: 'badSignature', claimed };
    }
  }

  #reject(rejection: { reason: RejectReason; claimed: string | null }, subject: string): void {
    this.rejected[rejection.reason]++;
    const who = rejection.claimed ?? '(unsigned)';
    const now = this.#now();
    const last = this.#warned.get(who);
    if (last && now - last.at < this.#warnEveryMs) {
      last.suppressed++;
      return;
    }
    // Forged ids could grow this map without end; forgetting old entries only means an extra warning line.
    if (this.#warned.size >= 1_000) this.#warned.clear();
    this.#warned.set(who, { at: now, suppressed: 0 });
    this.#log.warn(
      { sender: who, subject, reason: rejection.reason, suppressedSinceLastWarning: last?.suppressed ?? 0, rejected: { ...this.rejected } },
      `dropped a bus message: ${REASONS[rejection.reason]}`,
    );
  }
}
