// Events in SQL: one-off happenings beside state (an instance crashed, a node went down), numbered in the order they
// were written so a follower of the list asks for what came after the last one it saw; old ones are pruned.
import type { Kysely } from 'kysely';
import type { Notification } from '../core/messages.ts';
import type { Database } from './schema.ts';
import type { EventFilter, StoredEvent } from './store.ts';
import { iso } from './rows.ts';

export class SqlEventRows {
  readonly #db: Kysely<Database>;
  readonly #run: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(db: Kysely<Database>, run: <T>(fn: () => Promise<T>) => Promise<T>) {
    this.#db = db;
    this.#run = run;
  }

  async appendEvents(events: Notification[]): Promise<void> {
    if (!events.length) return;
    await this.#run(() =>
      this.#db.insertInto('events').values(events.map((e) => ({
        at: e.at, kind: e.kind, project: e.project ?? null, service: e.service ?? null, node_id: e.nodeId ?? null, instance_id: e.instanceId ?? null, message: e.message,
      }))).execute(),
    );
  }

  /** Oldest first: the newest `limit` (after `afterSeq` when given) matching the filter. */
  async listEvents(filter: EventFilter): Promise<StoredEvent[]> {
    const rows = await this.#run(() => {
      let q = this.#db.selectFrom('events').selectAll();
      if (filter.project !== undefined) q = q.where('project', '=', filter.project);
      if (filter.service !== undefined) q = q.where('service', '=', filter.service);
      if (filter.afterSeq !== undefined) q = q.where('seq', '>', filter.afterSeq);
      return q.orderBy('seq', 'desc').limit(filter.limit).execute();
    });
    return rows.reverse().map((r) => ({
      seq: Number(r.seq),
      kind: r.kind as Notification['kind'],
      at: iso(r.at),
      message: r.message,
      ...(r.project !== null ? { project: r.project } : {}),
      ...(r.service !== null ? { service: r.service } : {}),
      ...(r.node_id !== null ? { nodeId: r.node_id } : {}),
      ...(r.instance_id !== null ? { instanceId: r.instance_id } : {}),
    }));
  }

  async deleteEventsBefore(at: string): Promise<number> {
    const r = await this.#run(() => this.#db.deleteFrom('events').where('at', '<', at).executeTakeFirst());
    return Number(r.numDeletedRows ?? 0);
  }
}
