// Job trees and their logs in SQL: inserted in chunks, updated as they run, read as trees, pages and log tails.
import { sql, type Kysely } from 'kysely';
import { invalid, notFound } from '../core/errors.ts';
import type { Job, JobLogLine } from '../core/model.ts';
import type { Database } from './schema.ts';
import { invalidJobCursor, type JobFilter } from './store.ts';
import { iso, definedTags, bySiblingOrder, toJob } from './rows.ts';

export const DEFAULT_JOB_LIMIT = 50;
export const MAX_JOB_LIMIT = 500;
/** Rows per INSERT: PostgreSQL allows 65535 parameters in one statement. */
const INSERT_CHUNK = 1000;

export class SqlJobRows {
  readonly #db: Kysely<Database>;
  /** the store's own error translation (store_unavailable, constraint messages) */
  readonly #run: <T>(fn: () => Promise<T>) => Promise<T>;

  constructor(db: Kysely<Database>, run: <T>(fn: () => Promise<T>) => Promise<T>) {
    this.#db = db;
    this.#run = run;
  }

  async insertJobs(jobs: Job[]): Promise<void> {
    if (jobs.length === 0) return;
    const rows = jobs.map((j) => ({
      id: j.id,
      root_id: j.rootId,
      parent_id: j.parentId,
      kind: j.kind,
      title: j.title,
      state: j.state,
      tags: JSON.stringify(j.tags),
      params: JSON.stringify(j.params),
      error: j.error,
      created_at: j.createdAt,
      started_at: j.startedAt,
      finished_at: j.finishedAt,
      position: j.position,
    }));
    await this.#run(() =>
      this.#db.transaction().execute(async (trx) => {
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
          await trx.insertInto('jobs').values(rows.slice(i, i + INSERT_CHUNK)).execute();
        }
      }),
    );
  }

  async updateJob(id: string, patch: Partial<Pick<Job, 'state' | 'error' | 'startedAt' | 'finishedAt' | 'params' | 'tags'>>): Promise<void> {
    const set: { state?: string; error?: string | null; started_at?: string | null; finished_at?: string | null; params?: string; tags?: string } = {};
    if (patch.state !== undefined) set.state = patch.state;
    if (patch.error !== undefined) set.error = patch.error;
    if (patch.startedAt !== undefined) set.started_at = patch.startedAt;
    if (patch.finishedAt !== undefined) set.finished_at = patch.finishedAt;
    if (patch.params !== undefined) set.params = JSON.stringify(patch.params);
    // A queued root learns its tags (the version a deploy rolls out) when it is planned.
    if (patch.tags !== undefined) set.tags = JSON.stringify(patch.tags);
    const found = await this.#run(async () => {
      if (Object.keys(set).length === 0) {
        return (await this.#db.selectFrom('jobs').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
      }
      const result = await this.#db.updateTable('jobs').set(set).where('id', '=', id).executeTakeFirst();
      return result.numUpdatedRows > 0n;
    });
    if (!found) throw notFound(`job ${id}`);
  }

  async getJob(id: string): Promise<Job | null> {
    const row = await this.#run(() => this.#db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst());
    return row ? toJob(row) : null;
  }

  /**
   * Depth-first pre-order: a parent, then each child's subtree, siblings by (position, createdAt, id).
   * Jobs whose parent is missing from the tree (should not happen) come last rather than vanish.
   */
  async getJobTree(rootId: string): Promise<Job[]> {
    const rows = await this.#run(() => this.#db.selectFrom('jobs').selectAll().where('root_id', '=', rootId).execute());
    const jobs = rows.map(toJob).sort(bySiblingOrder);
    const ids = new Set(jobs.map((j) => j.id));
    const children = new Map<string | null, Job[]>();
    for (const j of jobs) {
      const parent = j.parentId !== null && ids.has(j.parentId) && j.id !== rootId ? j.parentId : null;
      const list = children.get(parent) ?? [];
      list.push(j);
      children.set(parent, list);
    }
    const out: Job[] = [];
    const visited = new Set<string>();
    // Iterative, so a deep tree cannot overflow the stack.
    const walk = (start: Job): void => {
      const stack = [start];
      while (stack.length > 0) {
        const j = stack.pop()!;
        if (visited.has(j.id)) continue;
        visited.add(j.id);
        out.push(j);
        const kids = children.get(j.id) ?? [];
        for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
      }
    };
    const top = children.get(null) ?? [];
    const root = top.find((j) => j.id === rootId);
    if (root) walk(root);
    for (const j of top) walk(j);
    // A parent cycle (corrupt data) is unreachable from the root; keep those rows visible anyway.
    for (const j of jobs) walk(j);
    return out;
  }

  async listJobs(filter: JobFilter): Promise<Job[]> {
    const limit = filter.limit ?? DEFAULT_JOB_LIMIT;
    if (!Number.isInteger(limit) || limit < 1) throw invalid(`limit must be a whole number from 1 to ${MAX_JOB_LIMIT}, not ${limit}`);
    const tags = definedTags(filter.tags);
    const rows = await this.#run(async () => {
      let query = this.#db.selectFrom('jobs').selectAll();
      if (filter.rootsOnly) query = query.where('parent_id', 'is', null);
      if (filter.states && filter.states.length > 0) query = query.where('state', 'in', filter.states);
      if (tags) query = query.where(sql<boolean>`tags @> ${JSON.stringify(tags)}::jsonb`);
      // The same condition in the form the ordered per-tag indexes (migration 0002) can serve.
      for (const tag of ['project', 'service', 'node'] as const) {
        if (tags?.[tag] !== undefined) query = query.where(sql<boolean>`tags ->> ${sql.lit(tag)} = ${tags[tag]}`);
      }
      if (filter.before !== undefined) {
        // Row comparison against the stored values, so the cursor's timestamp never round-trips through JS.
        query = query.where(sql<boolean>`(created_at, id) < (select b.created_at, b.id from jobs b where b.id = ${filter.before})`);
      }
      const page = await query
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(Math.min(limit, MAX_JOB_LIMIT))
        .execute();
      // An unknown cursor matches nothing; only an empty page costs the query that tells it from the end of the list.
      if (page.length === 0 && filter.before !== undefined) {
        const cursor = await this.#db.selectFrom('jobs').select('id').where('id', '=', filter.before).executeTakeFirst();
        if (!cursor) throw invalidJobCursor(filter.before);
      }
      return page;
    });
    return rows.map(toJob);
  }

  async appendJobLog(lines: JobLogLine[]): Promise<void> {
    if (lines.length === 0) return;
    const rows = lines.map((l) => ({ job_id: l.jobId, at: l.at, line: l.line }));
    // One transaction so a batch is seen whole; seq follows the order of `lines` (VALUES rows are numbered in order).
    await this.#run(() =>
      this.#db.transaction().execute(async (trx) => {
        for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
          await trx.insertInto('job_logs').values(rows.slice(i, i + INSERT_CHUNK)).execute();
        }
      }),
    );
  }

  async getJobLog(jobId: string, afterSeq?: number): Promise<Array<JobLogLine & { seq: number }>> {
    const rows = await this.#run(() => {
      let query = this.#db.selectFrom('job_logs').selectAll().where('job_id', '=', jobId);
      if (afterSeq !== undefined) query = query.where('seq', '>', afterSeq);
      return query.orderBy('seq').execute();
    });
    return rows.map((r) => ({ jobId: r.job_id, at: iso(r.at), line: r.line, seq: Number(r.seq) }));
  }
}
