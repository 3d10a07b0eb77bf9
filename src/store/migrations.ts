// The store's schema history, defined in code so the embedded and server backends run the very same migrations.
import { Kysely, Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import { EnjinError } from '../core/errors.ts';

/**
 * Append only: a migration that has run somewhere is never edited, a change is a new entry.
 * Names sort in the order they must run. Constraint names are explicit because sql-store.ts
 * turns them into messages for people.
 */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('workspaces')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('workspaces_name_unique', ['name'])
        .execute();

      await db.schema
        .createTable('tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('workspace_id', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('tokens_hash_unique', ['hash'])
        .addForeignKeyConstraint('tokens_workspace_fk', ['workspace_id'], 'workspaces', ['id'])
        .execute();

      // No foreign keys on current_version_id / routed_version_id: versions belong to projects, and the cycle would make
      // deleting a project order-dependent for no gain (the controller checks the version exists).
      await db.schema
        .createTable('projects')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('workspace_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('current_version_id', 'text')
        .addColumn('routed_version_id', 'text')
        .addColumn('scale', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('projects_name_unique', ['workspace_id', 'name'])
        .addForeignKeyConstraint('projects_workspace_fk', ['workspace_id'], 'workspaces', ['id'])
        .execute();

      await db.schema
        .createTable('versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('manifest', 'jsonb', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('versions_number_unique', ['project_id', 'number'])
        .addForeignKeyConstraint('versions_project_fk', ['project_id'], 'projects', ['id'])
        .execute();
      await db.schema.createIndex('versions_sha256_idx').on('versions').column('sha256').execute();

      // node_id is not a foreign key: the current part comes from agents, and a store rebuilt from
      // what nodes report may learn of an instance before its node row is written.
      await db.schema
        .createTable('instances')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('workspace_id', 'text', (c) => c.notNull())
        .addColumn('project_id', 'text', (c) => c.notNull())
        .addColumn('service', 'text', (c) => c.notNull())
        .addColumn('version_id', 'text', (c) => c.notNull())
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('desired', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('current_state', 'text')
        .addColumn('current_node_id', 'text')
        .addColumn('current_pid', 'integer')
        .addColumn('current_host', 'text')
        .addColumn('current_port', 'integer')
        .addColumn('current_restarts', 'integer')
        .addColumn('current_last_exit', 'jsonb')
        .addColumn('current_message', 'text')
        .addColumn('current_reported_at', 'timestamptz')
        .addCheckConstraint(
          'instances_current_whole',
          sql`(current_state is null) = (current_node_id is null) and (current_state is null) = (current_reported_at is null)`,
        )
        .addForeignKeyConstraint('instances_workspace_fk', ['workspace_id'], 'workspaces', ['id'])
        .addForeignKeyConstraint('instances_project_fk', ['project_id'], 'projects', ['id'])
        .addForeignKeyConstraint('instances_version_fk', ['version_id'], 'versions', ['id'])
        .execute();
      // "instances on host X" must find both those placed there and those actually running there.
      await db.schema.createIndex('instances_node_idx').on('instances').column('node_id').execute();
      await db.schema.createIndex('instances_current_node_idx').on('instances').column('current_node_id').execute();
      await db.schema.createIndex('instances_project_idx').on('instances').column('project_id').execute();

      await db.schema
        .createTable('nodes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('address', 'text', (c) => c.notNull())
        .addColumn('labels', 'jsonb', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'timestamptz')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .execute();

      // Jobs are history: no foreign keys to the entities they name (those may be deleted),
      // nor between jobs (a tree may be inserted in any order).
      await db.schema
        .createTable('jobs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('root_id', 'text', (c) => c.notNull())
        .addColumn('parent_id', 'text')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('title', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('tags', 'jsonb', (c) => c.notNull())
        .addColumn('params', 'jsonb', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addColumn('started_at', 'timestamptz')
        .addColumn('finished_at', 'timestamptz')
        .addColumn('position', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('jobs_root_idx').on('jobs').column('root_id').execute();
      await db.schema.createIndex('jobs_state_idx').on('jobs').column('state').execute();
      // listJobs pages newest first by (created_at, id); the partial index serves the default, roots-only listing.
      await db.schema.createIndex('jobs_created_idx').on('jobs').columns(['created_at', 'id']).execute();
      await db.schema
        .createIndex('jobs_roots_created_idx')
        .on('jobs')
        .columns(['created_at', 'id'])
        .where(sql.ref('parent_id'), 'is', null)
        .execute();
      // Tag filters are containment (`tags @> '{"project":"hello"}'`), which jsonb_path_ops indexes compactly.
      await sql`create index jobs_tags_idx on jobs using gin (tags jsonb_path_ops)`.execute(db);

      await db.schema
        .createTable('job_logs')
        .addColumn('seq', 'bigserial', (c) => c.primaryKey())
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('line', 'text', (c) => c.notNull())
        .addForeignKeyConstraint('job_logs_job_fk', ['job_id'], 'jobs', ['id'], (fk) => fk.onDelete('cascade'))
        .execute();
      await db.schema.createIndex('job_logs_job_seq_idx').on('job_logs').columns(['job_id', 'seq']).execute();
    },
  },
  // Listings filtered by a tag page newest first within that tag: an ordered index per tag people filter by serves
  // the page directly (the GIN index above answers containment but must sort whatever it finds). The controller
  // lists recent jobs from memory; these serve pages of older history and every listing in cluster mode.
  '0002_jobs_listing_by_tag': {
    async up(db: Kysely<any>): Promise<void> {
      for (const tag of ['project', 'service', 'node']) {
        await sql`create index ${sql.id(`jobs_${tag}_created_idx`)} on jobs ((tags ->> ${sql.lit(tag)}), created_at, id)`.execute(db);
      }
    },
  },
  // The cluster: nodes join with a signed identity, may carry traffic, instances or both, sit in a compartment, and
  // can be drained by the operator.
  '0003_cluster_nodes': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .alterTable('nodes')
        .addColumn('draining', 'boolean', (c) => c.notNull().defaultTo(false))
        .execute();
      await db.schema.alterTable('nodes').addColumn('roles', 'jsonb', (c) => c.notNull().defaultTo(sql`'["agent"]'::jsonb`)).execute();
      await db.schema.alterTable('nodes').addColumn('compartment', 'text').execute();
      await db.schema.alterTable('nodes').addColumn('public_key', 'text').execute();
    },
  },
  // Admission: a join token lets one host (or, reusable, many until it expires) join the cluster. Only the sha256 of
  // the secret is kept; used_at is set by the one UPDATE that consumes it, so two joins cannot both use a single-use token.
  '0004_join_tokens': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('join_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('reusable', 'boolean', (c) => c.notNull())
        .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
        .addColumn('used_at', 'timestamptz')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('join_tokens_hash_unique', ['hash'])
        .execute();
      // Ring 0's own keys: each controller records its Ed25519 public key here, so controllers sharing a store trust
      // each other's signed messages as they trust admitted nodes'.
      await db.schema
        .createTable('controller_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .execute();
    },
  },
  // Several controllers on one PostgreSQL: each heartbeats its row, so anyone can name the leader (the one holding
  // the advisory lock marks itself with leader_since).
  '0005_controllers': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('controllers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('api_url', 'text', (c) => c.notNull())
        .addColumn('started_at', 'timestamptz', (c) => c.notNull())
        .addColumn('last_seen_at', 'timestamptz', (c) => c.notNull())
        .addColumn('leader_since', 'timestamptz')
        .execute();
    },
  },
  // Packages live in PostgreSQL when the store is a server, so every controller can serve them to agents. A package row
  // and its chunks are written in one transaction: a half-written package never exists. (The embedded store keeps
  // packages on disk instead: PGlite holds its data in a WebAssembly heap.)
  '0006_package_blobs': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('package_blobs')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('chunk_size', 'integer', (c) => c.notNull())
        .addColumn('chunks', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('package_chunks')
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('data', 'bytea', (c) => c.notNull())
        .addPrimaryKeyConstraint('package_chunks_pk', ['sha256', 'idx'])
        .addForeignKeyConstraint('package_chunks_blob_fk', ['sha256'], 'package_blobs', ['sha256'], (fk) => fk.onDelete('cascade'))
        .execute();
    },
  },
  // Releases: a version may run an earlier version's build (a config change, a rollback) with config vars of its own,
  // and records why it was made. Config is kept sealed (AES-256-GCM under the controller's master key), never in
  // plain text; a project keeps the config its first release will get until it has one.
  '0007_releases': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .alterTable('versions')
        .addColumn('build_id', 'text')
        .addColumn('config', 'text')
        .addColumn('cause', 'jsonb')
        .execute();
      await db.schema.alterTable('projects').addColumn('config', 'text').execute();
    },
  },
  // Events: what happened beside state (`enjin events`), kept for the controller's retention and pruned by the leader.
  '0008_events': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .createTable('events')
        .addColumn('seq', 'bigserial', (c) => c.primaryKey())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('project', 'text')
        .addColumn('service', 'text')
        .addColumn('node_id', 'text')
        .addColumn('instance_id', 'text')
        .addColumn('message', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_project_seq').on('events').columns(['project', 'seq']).execute();
      await db.schema.createIndex('events_at').on('events').column('at').execute();
    },
  },
  // The operator's hold on a project: frozen (no automatic tasks) and the scale `enjin stop` put aside for `enjin start`.
  '0009_project_holds': {
    async up(db: Kysely<any>): Promise<void> {
      await db.schema
        .alterTable('projects')
        .addColumn('frozen', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('stopped_scale', 'jsonb')
        .execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Brings the schema up to date; safe to run on every open, and from several controllers at once (Kysely takes a lock). */
export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider, migrationTableName: 'enjin_migration', migrationLockTableName: 'enjin_migration_lock' });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  if (error instanceof EnjinError) throw error;
  const message = error instanceof Error ? error.message : String(error);
  const failed = results?.find((r) => r.status === 'Error')?.migrationName;
  // Kysely reports a migration the database has run but this build does not know as "corrupted".
  const hint = /corrupted migrations/i.test(message)
    ? '; the store was migrated by a newer enjin: run that version, or point this one at another store'
    : '; the store is unchanged (migrations run in a transaction): fix the cause and start again';
  throw new EnjinError('store_migration_failed', `migrating the store failed${failed ? ` at ${failed}` : ''}: ${message}${hint}`, {
    status: 500,
    cause: error,
  });
}
