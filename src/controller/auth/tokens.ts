// API tokens: secrets are handed out once and only their sha256 is stored; agents get a per-run token that can
// only download packages.
import { createHash, timingSafeEqual } from 'node:crypto';
import { newId, newSecret } from '../../core/ids.ts';
import type { Store } from '../../store/store.ts';

export type TokenRole = 'admin' | 'node';

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export class TokenAuth {
  /** accepted only for package downloads by agents; lives as long as this controller process */
  readonly nodeToken = newSecret();

  constructor(private readonly store: Store) {}

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
    return (await this.store.findTokenByHash(hashToken(secret))) ? 'admin' : null;
  }
}
