// API tokens: secrets are handed out once and only their sha256 is stored; agents get a per-run token that can
// only download packages.
import { createHash, timingSafeEqual } from 'node:crypto';
import { newId, newSecret } from '../../core/ids.ts';
import type { Store } from '../../store/store.ts';

export type TokenRole = 'admin' | 'node';

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/**
 * A token found in the store is trusted again without a query for this long: every API request checks its token, and
 * a store query per request (PGlite runs on the controller's event loop) made the API slow under load. Bounded, so a
 * revocation (when tokens can be revoked, or by another controller) takes effect within it.
 */
const CHECKED_TTL_MS = 60_000;
/** Only tokens that passed are remembered (a flood of wrong ones cannot fill memory); past this, the oldest go. */
const CHECKED_MAX = 1_000;

export class TokenAuth {
  /** accepted only for package downloads by agents; lives as long as this controller process */
  readonly nodeToken = newSecret();
  /** sha256 of a valid admin token → when it was found in the store */
  readonly #checked = new Map<string, number>();

  readonly #ttlMs: number;
  /** the clock the memory's age is read from (a test steps it instead of sleeping) */
  readonly #now: () => number;

  constructor(private readonly store: Store, opts: { checkedTtlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = opts.checkedTtlMs ?? CHECKED_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Creates an admin token and returns its secret: the only time it is seen. */
  async create(name: string): Promise<string> {
    const secret = `enj_${newSecret()}`;
    await this.store.insertToken({ id: newId('tok'), name, hash: hashToken(secret), workspaceId: null, createdAt: new Date().toISOString() });
    return secret;
  }

  async check(secret: string): Promise<TokenRole | null> {
    const given = Buffer.from(secret);
    const node = Buffer.from(this.nodeToken);
    if (given.length === node.length && timingSafeEqual(given, node)) return 'node';
    const hash = hashToken(secret);
    const checkedAt = this.#checked.get(hash);
    if (checkedAt !== undefined && this.#now() - checkedAt < this.#ttlMs) return 'admin';
    this.#checked.delete(hash);
    if (!(await this.store.findTokenByHash(hash))) return null;
    if (this.#checked.size >= CHECKED_MAX) this.#checked.delete(this.#checked.keys().next().value!);
    this.#checked.set(hash, this.#now());
    return 'admin';
  }
}
