// Trust on first use, for a bounded time: a controller rebuilding an empty store lost every node's admitted key with
// it. While the window is open, a node that presents its public key with a signed message is admitted with that key,
// once the message proved it holds the private key; the first key proven for an id is the only one it gets. Outside
// the window nothing is taken on trust: nodes join with a token, as always.
import type { KeyObject } from 'node:crypto';
import { publicKeyFromB64 } from '../../bus/identity.ts';
import type { KeyRing } from '../../bus/signing.ts';
import { componentLogger } from '../../log/logger.ts';

const log = componentLogger('recovery');

/** Only node ids are taken on trust: controllers record their own keys in the store. */
const NODE_ID = /^node_[0-9a-z]{1,64}$/;

export class TrustWindow implements KeyRing {
  readonly #until: number;
  readonly #now: () => number;
  /** ids bound during the window, with the key each one proved */
  readonly #bound = new Map<string, { key: KeyObject; b64: string }>();
  readonly #listeners: Array<(id: string, publicKeyB64: string) => void> = [];
  #closed = false;

  constructor(opts: { windowMs: number; now?: () => number }) {
    this.#now = opts.now ?? Date.now;
    this.#until = this.#now() + opts.windowMs;
  }

  get open(): boolean {
    return !this.#closed && this.#now() < this.#until;
  }

  /** ms since the epoch when the window closes */
  get closesAt(): number {
    return this.#until;
  }

  /** Closes it early (the operator's recovery is done). */
  close(): void {
    this.#closed = true;
  }

  /**
   * Called with each id the first time it is bound (the recovery takes an inventory of that node), including the ids
   * bound before the listener came: the bus admits keys as soon as the controller connects, and a node whose first
   * signed message arrives before the recovery starts listening must not be bound yet never inventoried.
   */
  onBound(listener: (id: string, publicKeyB64: string) => void): void {
    this.#listeners.push(listener);
    for (const [id, k] of this.#bound) listener(id, k.b64);
  }

  /** The keys bound so far (they stay trusted after the window: the nodes are admitted with them). */
  bound(): Array<{ id: string; publicKey: string }> {
    return [...this.#bound].map(([id, k]) => ({ id, publicKey: k.b64 }));
  }

  publicKey(id: string): KeyObject | null {
    return this.#bound.get(id)?.key ?? null;
  }

  offered(id: string, publicKeyB64: string): KeyObject | null {
    if (!this.open || !NODE_ID.test(id) || this.#bound.has(id)) return null;
    try {
      const key = publicKeyFromB64(publicKeyB64);
      return key.asymmetricKeyType === 'ed25519' ? key : null;
    } catch (err) {
      log.warn({ err, nodeId: id }, 'a node presented a key that is not a public key; ignored');
      return null;
    }
  }

  confirmed(id: string, publicKeyB64: string): void {
    if (this.#bound.has(id) || !this.open) return;
    this.#bound.set(id, { key: publicKeyFromB64(publicKeyB64), b64: publicKeyB64 });
    log.info({ nodeId: id }, 'a node proved its key during the recovery window: admitted with it');
    for (const l of this.#listeners) l(id, publicKeyB64);
  }
}
