// The store's tables as Kysely sees them: one schema for PGlite and PostgreSQL, mapped to the domain types in sql-store.ts.
import type { ColumnType, Generated } from 'kysely';
import type { InstanceCurrent, JobTags, Manifest, ReleaseCause } from '../core/model.ts';

/** pg returns timestamptz as Date, so does PGlite; both accept the ISO strings the domain uses. */
export type Timestamp = ColumnType<Date | string, string, string>;
export type NullableTimestamp = ColumnType<Date | string | null, string | null, string | null>;
/**
 * jsonb is written as JSON text: pg would otherwise send a JS array as a PostgreSQL array literal,
 * and text is what both drivers pass through unchanged.
 */
export type Json<T> = ColumnType<T, string, string>;
export type NullableJson<T> = ColumnType<T | null, string | null, string | null>;
/** int8: pg returns a string, PGlite a number (or a bigint past 2^53). */
export type Int8 = ColumnType<string | number | bigint, number, number>;

export interface WorkspacesTable {
  id: string;
  name: string;
  created_at: Timestamp;
}

export interface TokensTable {
  id: string;
  name: string;
  hash: string;
  workspace_id: string | null;
  created_at: Timestamp;
}

export interface JoinTokensTable {
  id: string;
  hash: string;
  reusable: boolean;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface ControllerKeysTable {
  id: string;
  public_key: string;
  created_at: Timestamp;
}

export interface ProjectsTable {
  id: string;
  workspace_id: string;
  name: string;
  current_version_id: string | null;
  routed_version_id: string | null;
  scale: Json<Record<string, number>>;
  /** sealed ConfigVars for the project's first release, while it has none (migration 0007) */
  config: ColumnType<string | null, string | null | undefined, string | null>;
  /** migration 0009 */
  frozen: ColumnType<boolean, boolean | undefined, boolean>;
  /** migration 0009: the scale `enjin stop` put aside */
  stopped_scale: ColumnType<Record<string, number> | null, string | null | undefined, string | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface VersionsTable {
  id: string;
  project_id: string;
  number: number;
  sha256: string;
  size: Int8;
  manifest: Json<Manifest>;
  created_at: Timestamp;
  /** migration 0007: the version whose build this one runs (null: its own) */
  build_id: ColumnType<string | null, string | null | undefined, string | null>;
  /** sealed ConfigVars (null: none) */
  config: ColumnType<string | null, string | null | undefined, string | null>;
  cause: ColumnType<ReleaseCause | null, string | null | undefined, string | null>;
}

/** Desired columns first; the current_* columns are all null until a node reports the instance. */
export interface InstancesTable {
  id: string;
  workspace_id: string;
  project_id: string;
  service: string;
  version_id: string;
  node_id: string;
  desired: string;
  created_at: Timestamp;
  current_state: string | null;
  current_node_id: string | null;
  current_pid: number | null;
  current_host: string | null;
  current_port: number | null;
  current_restarts: number | null;
  current_last_exit: NullableJson<InstanceCurrent['lastExit']>;
  current_message: string | null;
  current_reported_at: NullableTimestamp;
}

export interface NodesTable {
  id: string;
  name: string;
  address: string;
  labels: Json<Record<string, string>>;
  status: string;
  draining: Generated<boolean>;
  roles: ColumnType<string[], string | undefined, string>;
  compartment: string | null;
  public_key: string | null;
  last_seen_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface JobsTable {
  id: string;
  root_id: string;
  parent_id: string | null;
  kind: string;
  title: string;
  state: string;
  tags: Json<JobTags>;
  params: Json<Record<string, unknown>>;
  error: string | null;
  created_at: Timestamp;
  started_at: NullableTimestamp;
  finished_at: NullableTimestamp;
  position: number;
}

export interface JobLogsTable {
  /** bigserial, assigned by the database in insertion order */
  seq: ColumnType<string | number | bigint, never, never>;
  job_id: string;
  at: Timestamp;
  line: string;
}

/** One stored package (PostgreSQL backend): its chunks are package_chunks rows 0..chunks-1 of chunk_size bytes. */
export interface PackageBlobsTable {
  sha256: string;
  size: Int8;
  chunk_size: number;
  chunks: number;
  created_at: Timestamp;
}

export interface PackageChunksTable {
  sha256: string;
  idx: number;
  data: Uint8Array;
}

/** one row per controller process that has run on this store (migration 0005) */
export interface ControllersTable {
  id: string;
  api_url: string;
  started_at: Timestamp;
  last_seen_at: Timestamp;
  leader_since: NullableTimestamp;
}

/** migration 0008: one row per event, numbered in the order written */
export interface EventsTable {
  seq: ColumnType<string | number | bigint, never, never>;
  at: Timestamp;
  kind: string;
  project: string | null;
  service: string | null;
  node_id: string | null;
  instance_id: string | null;
  message: string;
}

export interface Database {
  workspaces: WorkspacesTable;
  tokens: TokensTable;
  join_tokens: JoinTokensTable;
  controller_keys: ControllerKeysTable;
  projects: ProjectsTable;
  versions: VersionsTable;
  instances: InstancesTable;
  nodes: NodesTable;
  jobs: JobsTable;
  job_logs: JobLogsTable;
  package_blobs: PackageBlobsTable;
  package_chunks: PackageChunksTable;
  controllers: ControllersTable;
  events: EventsTable;
}
