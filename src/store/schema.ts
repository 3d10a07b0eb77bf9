// The store's tables as Kysely sees them: one schema for PGlite and PostgreSQL, mapped to the domain types in sql-store.ts.
import type { ColumnType } from 'kysely';
import type { InstanceCurrent, JobTags, Manifest } from '../core/model.ts';

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

export interface ProjectsTable {
  id: string;
  workspace_id: string;
  name: string;
  current_version_id: string | null;
  routed_version_id: string | null;
  scale: Json<Record<string, number>>;
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

export interface Database {
  workspaces: WorkspacesTable;
  tokens: TokensTable;
  projects: ProjectsTable;
  versions: VersionsTable;
  instances: InstancesTable;
  nodes: NodesTable;
  jobs: JobsTable;
  job_logs: JobLogsTable;
}
