// The Store over Kysely: the same SQL for PGlite and PostgreSQL, rows mapped to and from the domain types.
import { sql, type Kysely } from 'kysely';
import { invalid, notFound } from '../core/errors.ts';
import type { Instance, Job, JobLogLine, JobState, Node, Project, Version, Workspace } from '../core/model.ts';
import type { Database } from './schema.ts';
import { invalidJobCursor, type JobFilter, type Store, type StoreSnapshot, type TokenRecord } from './store.ts';
import { translateDatabaseError } from './store-errors.ts';

import { iso, definedTags, bySiblingOrder, toWorkspace, toToken, toProject, toVersion, toInstance, toNode, toJob } from './rows.ts';

export const DEFAULT_JOB_LIMIT = 50;
export const MAX_JOB_LIMIT = 500;
/** Rows per INSERT: PostgreSQL allows 65535 parameters in one statement. */
const INSERT_CHUNK = 1000;

export interface SqlStoreOptions {
  /** where the data lives, for messages: a data directory or a URL without its password */
  location?: string;
  /** runs after the database is closed (the embedded backend releases its data-dir lock here) */
  onClose?: () => Promise<void>;
}

export class SqlStore implements Store {
  readonly backend: 'pglite' | 'postgres';
  readonly #db: Kysely<Database>;
  readonly #location: string;
  readonly #onClose: (() => Promise<void>) | undefined;
  #closed: Promise<void> | undefined;

  constructor(db: Kysely<Database>, backend: 'pglite' | 'postgres', opts: SqlStoreOptions = {}) {
    this.#db = db;
    this.backend = backend;
    this.#location = opts.location ?? backend;
    this.#onClose = opts.onClose;
  }

  async load(): Promise<StoreSnapshot> {
    // One repeatable-read transaction, so the snapshot is consistent even while another controller writes.
    return this.#run(() =>
      this.#db
        .transaction()
        .setIsolationLevel('repeatable read')
        .execute(async (trx) => {
          const workspaces = await trx.selectFrom('workspaces').selectAll().orderBy('created_at').orderBy('id').execute();
          const projects = await trx.selectFrom('projects').selectAll().orderBy('created_at').orderBy('id').execute();
          const versions = await trx.selectFrom('versions').selectAll().orderBy('project_id').orderBy('number').execute();
          const instances = await trx.selectFrom('instances').selectAll().orderBy('created_at').orderBy('id').execute();
          const nodes = await trx.selectFrom('nodes').selectAll().orderBy('created_at').orderBy('id').execute();
          const unfinishedJobs = await trx
            .selectFrom('jobs')
            .selectAll()
            .where('root_id', 'in', (eb) =>
              eb.selectFrom('jobs').select('root_id').where('state', 'in', ['waiting', 'running'] satisfies JobState[]),
            )
            .orderBy('created_at')
            .orderBy('id')
            .execute();
          return {
            workspaces: workspaces.map(toWorkspace),
            projects: projects.map(toProject),
            versions: versions.map(toVersion),
            instances: instances.map(toInstance),
            nodes: nodes.map(toNode),
            unfinishedJobs: unfinishedJobs.map(toJob),
          };
        }),
    );
  }

  /** Idempotent: later calls wait for the first. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.#db.destroy();
      } finally {
        await this.#onClose?.();
      }
    })();
    return this.#closed;
  }

  async insertWorkspace(w: Workspace): Promise<void> {
    await this.#run(() => this.#db.insertInto('workspaces').values({ id: w.id, name: w.name, created_at: w.createdAt }).execute());
  }

  async insertToken(t: TokenRecord): Promise<void> {
    await this.#run(() =>
      this.#db
        .insertInto('tokens')
        .values({ id: t.id, name: t.name, hash: t.hash, workspace_id: t.workspaceId, created_at: t.createdAt })
        .execute(),
    );
  }

  async findTokenByHash(hash: string): Promise<TokenRecord | null> {
    const row = await this.#run(() => this.#db.selectFrom('tokens').selectAll().where('hash', '=', hash).executeTakeFirst());
    return row ? toToken(row) : null;
  }

  async saveProject(p: Project): Promise<void> {
    const { id, ...rest } = {
      id: p.id,
      workspace_id: p.workspaceId,
      name: p.name,
      current_version_id: p.currentVersionId,
      routed_version_id: p.routedVersionId,
      scale: JSON.stringify(p.scale),
      created_at: p.createdAt,
      updated_at: p.updatedAt,
    };
    await this.#run(() =>
      this.#db
        .insertInto('projects')
        .values({ id, ...rest })
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute(),
    );
  }

  /** Deleting a project that is already gone is not an error: "no undeletable things". */
  async deleteProject(id: string): Promise<void> {
    await this.#run(() =>
      this.#db.transaction().execute(async (trx) => {
        // Instances first: they reference versions, which reference the project.
        await trx.deleteFrom('instances').where('project_id', '=', id).execute();
        await trx.deleteFrom('versions').where('project_id', '=', id).execute();
        await trx.deleteFrom('projects').where('id', '=', id).execute();
      }),
    );
  }

  async insertVersion(v: Version): Promise<void> {
    await this.#run(() =>
      this.#db
        .insertInto('versions')
        .values({
          id: v.id,
          project_id: v.projectId,
          number: v.number,
          sha256: v.sha256,
          size: v.size,
          manifest: JSON.stringify(v.manifest),
          created_at: v.createdAt,
        })
        .execute(),
    );
  }

  async saveInstance(i: Instance): Promise<void> {
    const c = i.current;
    const { id, ...rest } = {
      id: i.id,
      workspace_id: i.workspaceId,
      project_id: i.projectId,
      service: i.service,
      version_id: i.versionId,
      node_id: i.nodeId,
      desired: i.desired,
      created_at: i.createdAt,
      current_state: c?.state ?? null,
      current_node_id: c?.nodeId ?? null,
      current_pid: c?.pid ?? null,
      current_host: c?.host ?? null,
      current_port: c?.port ?? null,
      current_restarts: c?.restarts ?? null,
      current_last_exit: c?.lastExit ? JSON.stringify(c.lastExit) : null,
      current_message: c?.message ?? null,
      current_reported_at: c?.reportedAt ?? null,
    };
    await this.#run(() =>
      this.#db
        .insertInto('instances')
        .values({ id, ...rest })
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute(),
    );
  }

  async deleteInstance(id: string): Promise<void> {
    await this.#run(() => this.#db.deleteFrom('instances').where('id', '=', id).execute());
  }

  async saveNode(n: Node): Promise<void> {
    const { id, ...rest } = {
      id: n.id,
      name: n.name,
      address: n.address,
      labels: JSON.stringify(n.labels),
      status: n.status,
      last_seen_at: n.lastSeenAt,
      created_at: n.createdAt,
    };
    await this.#run(() =>
      this.#db
        .insertInto('nodes')
        .values({ id, ...rest })
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute(),
    );
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

  async updateJob(id: string, patch: Partial<Pick<Job, 'state' | 'error' | 'startedAt' | 'finishedAt' | 'params'>>): Promise<void> {
    const set: { state?: string; error?: string | null; started_at?: string | null; finished_at?: string | null; params?: string } = {};
    if (patch.state !== undefined) set.state = patch.state;
    if (patch.error !== undefined) set.error = patch.error;
    if (patch.startedAt !== undefined) set.started_at = patch.startedAt;
    if (patch.finishedAt !== undefined) set.finished_at = patch.finishedAt;
    if (patch.params !== undefined) set.params = JSON.stringify(patch.params);
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

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateDatabaseError(err, this.#location);
    }
  }
}
