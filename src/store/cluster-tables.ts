// The cluster's own tables: join tokens (spent by one UPDATE), controllers' keys, and the controllers sharing a store.
import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';
import type { ControllerRecord, JoinTokenRecord, JoinTokenUse } from './store.ts';
import { toController, toJoinToken } from './rows.ts';

export class SqlClusterTables {
  readonly #db: Kysely<Database>;
  /** the store's own error translation (store_unavailable, constraint messages) */
  readonly #run: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(db: Kysely<Database>, run: <T>(fn: () => Promise<T>) => Promise<T>) {
    this.#db = db;
    this.#run = run;
  }

  async insertJoinToken(t: JoinTokenRecord): Promise<void> {
    await this.#run(() =>
      this.#db
        .insertInto('join_tokens')
        .values({ id: t.id, hash: t.hash, reusable: t.reusable, expires_at: t.expiresAt, used_at: t.usedAt, created_at: t.createdAt })
        .execute(),
    );
  }

  async consumeJoinToken(hash: string, at: string): Promise<JoinTokenUse> {
    // One UPDATE decides: PostgreSQL re-checks the WHERE on the row a concurrent UPDATE just changed, so the second of
    // two racing joins finds used_at set and updates nothing.
    const used = await this.#run(() =>
      this.#db
        .updateTable('join_tokens')
        .set({ used_at: at })
        .where('hash', '=', hash)
        .where('expires_at', '>', at)
        .where((eb) => eb.or([eb('reusable', '=', true), eb('used_at', 'is', null)]))
        .returningAll()
        .executeTakeFirst(),
    );
    if (used) return { ok: true, token: toJoinToken(used) };
    // Only to say why: the decision above stands whatever this read finds.
    const row = await this.#run(() => this.#db.selectFrom('join_tokens').selectAll().where('hash', '=', hash).executeTakeFirst());
    if (!row) return { ok: false, reason: 'unknown' };
    const token = toJoinToken(row);
    if (Date.parse(token.expiresAt) <= Date.parse(at)) return { ok: false, reason: 'expired' };
    return { ok: false, reason: 'used' };
  }

  async saveControllerKey(id: string, publicKey: string, at: string): Promise<void> {
    await this.#run(() =>
      this.#db
        .insertInto('controller_keys')
        .values({ id, public_key: publicKey, created_at: at })
        .onConflict((oc) => oc.column('id').doUpdateSet({ public_key: publicKey }))
        .execute(),
    );
  }

  async controllerKeys(): Promise<Array<{ id: string; publicKey: string }>> {
    const rows = await this.#run(() => this.#db.selectFrom('controller_keys').select(['id', 'public_key']).execute());
    return rows.map((r) => ({ id: r.id, publicKey: r.public_key }));
  }

  async saveController(c: ControllerRecord): Promise<void> {
    const { id, ...rest } = { id: c.id, api_url: c.apiUrl, started_at: c.startedAt, last_seen_at: c.lastSeenAt, leader_since: c.leaderSince };
    await this.#run(() =>
      this.#db
        .insertInto('controllers')
        .values({ id, ...rest })
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute(),
    );
  }

  async listControllers(): Promise<ControllerRecord[]> {
    const rows = await this.#run(() => this.#db.selectFrom('controllers').selectAll().orderBy('started_at').orderBy('id').execute());
    return rows.map(toController);
  }

  async deleteControllersSeenBefore(before: string): Promise<void> {
    await this.#run(() => this.#db.deleteFrom('controllers').where('last_seen_at', '<', before).execute());
  }
}
