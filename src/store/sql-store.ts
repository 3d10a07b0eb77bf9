// The Store over Kysely: the same SQL for PGlite and PostgreSQL, rows mapped to and from the domain types.
import { sql, type Kysely } from 'kysely';
import type { Instance, Job, JobLogLine, JobState, Node, Project, Version, Workspace } from '../core/model.ts';
import type { Database } from './schema.ts';
import { type ConfigSealer, type ControllerRecord, type EventFilter, type StoredEvent, type JobFilter, type JoinTokenRecord, type JoinTokenUse, type LeaderLock, type Store, type StoreSnapshot, type TokenRecord } from './store.ts';
import { translateDatabaseError } from './store-errors.ts';
import { SqlPackageBlobs } from './package-blobs.ts';
import { SqlClusterTables } from './cluster-tables.ts';
import { SqlJobRows } from './job-rows.ts';

import { SqlEventRows } from './event-rows.ts';
import type { Notification } from '../core/messages.ts';
import { toWorkspace, toToken, toProject, toVersion, toInstance, toNode, toJob, sealConfig } from './rows.ts';


export interface SqlStoreOptions {
  /** where the data lives, for messages: a data directory or a URL without its password */
  location?: string;
  /** runs after the database is closed (the embedded backend releases its data-dir lock here) */
  onClose?: () => Promise<void>;
  /** makes leader locks on connections of their own (PostgreSQL only) */
  leaderLocks?: () => LeaderLock;
  /** seals config vars written and opens them read; without it, a store holding config refuses to load */
  sealer?: ConfigSealer;
}

export class SqlStore implements Store {
  readonly backend: 'pglite' | 'postgres';
  readonly packageBlobs: SqlPackageBlobs;
  readonly #cluster: SqlClusterTables;
  readonly #jobs: SqlJobRows;
  readonly #events: SqlEventRows;
  readonly #db: Kysely<Database>;
  readonly #location: string;
  readonly #sealer: ConfigSealer | undefined;
  readonly #onClose: (() => Promise<void>) | undefined;
  #closed: Promise<void> | undefined;

  constructor(db: Kysely<Database>, backend: 'pglite' | 'postgres', opts: SqlStoreOptions = {}) {
    this.#db = db;
    this.backend = backend;
    this.#location = opts.location ?? backend;
    this.#onClose = opts.onClose;
    this.#sealer = opts.sealer;
    this.packageBlobs = new SqlPackageBlobs(db, this.#location);
    this.#cluster = new SqlClusterTables(db, (fn) => this.#run(fn));
    this.#jobs = new SqlJobRows(db, (fn) => this.#run(fn));
    this.#events = new SqlEventRows(db, (fn) => this.#run(fn));
    if (opts.leaderLocks) this.openLeaderLock = opts.leaderLocks;
  }

  openLeaderLock?: () => LeaderLock;

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
              eb.selectFrom('jobs').select('root_id').where('state', 'in', ['queued', 'waiting', 'running'] satisfies JobState[]),
            )
            .orderBy('created_at')
            .orderBy('id')
            .execute();
          return {
            workspaces: workspaces.map(toWorkspace),
            projects: projects.map((r) => toProject(r, this.#sealer)),
            versions: versions.map((r) => toVersion(r, this.#sealer)),
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

  async listTokens(): Promise<TokenRecord[]> {
    const rows = await this.#run(() => this.#db.selectFrom('tokens').selectAll().orderBy('created_at').execute());
    return rows.map(toToken);
  }

  async ping(): Promise<void> {
    await this.#run(() => sql`select 1`.execute(this.#db));
  }

  // The cluster's own tables (join tokens, controllers and their keys): see cluster-tables.ts.
  insertJoinToken(t: JoinTokenRecord): Promise<void> {
    return this.#cluster.insertJoinToken(t);
  }
  consumeJoinToken(hash: string, at: string): Promise<JoinTokenUse> {
    return this.#cluster.consumeJoinToken(hash, at);
  }
  saveControllerKey(id: string, publicKey: string, at: string): Promise<void> {
    return this.#cluster.saveControllerKey(id, publicKey, at);
  }
  controllerKeys(): Promise<Array<{ id: string; publicKey: string }>> {
    return this.#cluster.controllerKeys();
  }
  saveController(c: ControllerRecord): Promise<void> {
    return this.#cluster.saveController(c);
  }
  listControllers(): Promise<ControllerRecord[]> {
    return this.#cluster.listControllers();
  }
  deleteControllersSeenBefore(before: string): Promise<void> {
    return this.#cluster.deleteControllersSeenBefore(before);
  }

  async saveProject(p: Project): Promise<void> {
    const { id, ...rest } = {
      id: p.id,
      workspace_id: p.workspaceId,
      name: p.name,
      current_version_id: p.currentVersionId,
      routed_version_id: p.routedVersionId,
      scale: JSON.stringify(p.scale),
      config: sealConfig(p.config, this.#sealer),
      frozen: p.frozen === true,
      stopped_scale: p.stoppedScale && Object.keys(p.stoppedScale).length ? JSON.stringify(p.stoppedScale) : null,
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
          build_id: v.buildId ?? null,
          config: sealConfig(v.config, this.#sealer),
          cause: v.cause ? JSON.stringify(v.cause) : null,
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
      draining: n.draining,
      roles: JSON.stringify(n.roles),
      compartment: n.compartment,
      public_key: n.publicKey,
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

  async deleteNode(id: string): Promise<void> {
    await this.#run(() =>
      this.#db.transaction().execute(async (trx) => {
        await trx.deleteFrom('instances').where('node_id', '=', id).execute();
        await trx.deleteFrom('nodes').where('id', '=', id).execute();
      }),
    );
  }

  insertJobs(jobs: Job[]): Promise<void> {
    return this.#jobs.insertJobs(jobs);
  }

  updateJob(id: string, patch: Partial<Pick<Job, 'state' | 'error' | 'startedAt' | 'finishedAt' | 'params' | 'tags'>>): Promise<void> {
    return this.#jobs.updateJob(id, patch);
  }

  getJob(id: string): Promise<Job | null> {
    return this.#jobs.getJob(id);
  }

  getJobTree(rootId: string): Promise<Job[]> {
    return this.#jobs.getJobTree(rootId);
  }

  listJobs(filter: JobFilter): Promise<Job[]> {
    return this.#jobs.listJobs(filter);
  }

  appendEvents(events: Notification[]): Promise<void> {
    return this.#events.appendEvents(events);
  }
  listEvents(filter: EventFilter): Promise<StoredEvent[]> {
    return this.#events.listEvents(filter);
  }
  deleteEventsBefore(at: string): Promise<number> {
    return this.#events.deleteEventsBefore(at);
  }
  appendJobLog(lines: JobLogLine[]): Promise<void> {
    return this.#jobs.appendJobLog(lines);
  }

  getJobLog(jobId: string, afterSeq?: number): Promise<Array<JobLogLine & { seq: number }>> {
    return this.#jobs.getJobLog(jobId, afterSeq);
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateDatabaseError(err, this.#location);
    }
  }
}
