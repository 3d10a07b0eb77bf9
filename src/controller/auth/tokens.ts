// API tokens: secrets are handed out once and only their sha256 is stored; every token is kept in memory and checked
// there, so the API keeps answering while the store is away. (Agents need none: they fetch packages over the bus.)
import { createHash } from 'node:crypto';
import { newId, newSecret } from '../../core/ids.ts';
import type { Store, TokenRecord } from '../../store/store.ts';
import { componentLogger } from '../../log/logger.ts';

const log = componentLogger('auth');

export type TokenRole = 'admin';

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Tokens created by another controller (or removed there) reach this one's memory within this. */
const REFRESH_MS = 30_000;
/**
 * A token memory does not know may be brand new (made by another controller): the store is asked again, but at most
 * this often, so a flood of wrong tokens costs no more than one query per interval.
 */
const MISS_REFRESH_MS = 3_000;

export class TokenAuth {
  /** sha256 of every admin token the store holds → the token's name (who made a release) */
  #hashes = new Map<string, string>();
  /** when the store was last asked, and what it answered if it failed */
  #askedAt = -Infinity;
  #failure: unknown = null;
  #refreshing: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #refreshMs: number;
  readonly #missRefreshMs: number;
  /** the clock refreshes are spaced by (a test steps it instead of sleeping) */
  readonly #now: () => number;

  constructor(private readonly store: Store, opts: { refreshMs?: number; missRefreshMs?: number; now?: () => number } = {}) {
    this.#refreshMs = opts.refreshMs ?? REFRESH_MS;
    this.#missRefreshMs = opts.missRefreshMs ?? MISS_REFRESH_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Loads every token and keeps them fresh every refreshMs until stop(). Throws when the store cannot be read. */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer ??= setInterval(() => {
      this.refresh().catch((err: unknown) => log.warn({ err }, 'could not refresh tokens from the store; the ones in memory keep working'));
    }, this.#refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Replaces memory with the store's tokens (one query at a time). */
  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      this.#askedAt = this.#now();
      try {
        const tokens: TokenRecord[] = await this.store.listTokens();
        this.#hashes = new Map(tokens.map((t) => [t.hash, t.name]));
        this.#failure = null;
      } catch (err) {
        this.#failure = err;
        throw err;
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  /** Creates an admin token and returns its secret: the only time it is seen. */
  async create(name: string): Promise<string> {
    const secret = `enj_${newSecret()}`;
    const hash = hashToken(secret);
    await this.store.insertToken({ id: newId('tok'), name, hash, workspaceId: null, createdAt: new Date().toISOString() });
    this.#hashes.set(hash, name);
    return secret;
  }

  /**
   * The role a secret grants, or null. Checked in memory; a miss asks the store again at most every few seconds,
   * and throws store_unavailable if it then cannot be asked (the token may be one this controller has not seen yet).
   */
  async check(secret: string): Promise<TokenRole | null> {
    const hash = hashToken(secret);
    if (this.#hashes.has(hash)) return 'admin';
    if (this.#now() - this.#askedAt < this.#missRefreshMs) {
      // Asked a moment ago: that answer stands (a store that just failed still cannot vouch for this token).
      if (this.#refreshing) await this.#refreshing.catch(() => undefined);
      if (this.#hashes.has(hash)) return 'admin';
      if (this.#failure) throw this.#failure;
      return null;
    }
    await this.refresh();
    return this.#hashes.has(hash) ? 'admin' : null;
  }

  /** The name of a token `check` accepted (releases record who made them). */
  nameOf(secret: string): string | null {
    return this.#hashes.get(hashToken(secret)) ?? null;
  }
}
