// The Store: the controller's durable copy of desired state, job history and tokens. Only the controller imports it.
import type { Instance, Job, JobLogLine, JobState, JobTags, Node, Project, Version, Workspace } from '../core/model.ts';
import { EnjinError } from '../core/errors.ts';

export interface TokenRecord {
  id: string;
  name: string;
  /** sha256 hex of the secret; the secret itself is never stored */
  hash: string;
  /** null: global (admin) token */
  workspaceId: string | null;
  createdAt: string;
}

export interface JobFilter {
  /** only roots (trees), the default for listings */
  rootsOnly?: boolean;
  states?: JobState[];
  tags?: JobTags;
  limit?: number;
  /** newest first by createdAt, before this id (paging); an id no job has is refused with invalidJobCursor */
  before?: string;
}

/** A `before` that names no job: a 400 with its own code, so a client knows to start its listing again. */
export const invalidJobCursor = (before: string): EnjinError =>
  new EnjinError(
    'invalid_cursor',
    `\`before\` must be the id of a listed job (the \`next\` of the previous page), not ${JSON.stringify(before.slice(0, 80))}; start again without it`,
    { status: 400 },
  );

/** Everything the controller keeps in memory, loaded once at start. */
export interface StoreSnapshot {
  workspaces: Workspace[];
  projects: Project[];
  versions: Version[];
  instances: Instance[];
  nodes: Node[];
  /** jobs of trees that have not finished (some job waiting or running) */
  unfinishedJobs: Job[];
}

export interface Store {
  readonly backend: 'pglite' | 'postgres';
  /** loads the working set; migrations have already run in open */
  load(): Promise<StoreSnapshot>;
  close(): Promise<void>;

  insertWorkspace(w: Workspace): Promise<void>;

  insertToken(t: TokenRecord): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | null>;

  /** insert or replace by id */
  saveProject(p: Project): Promise<void>;
  /** deletes the project and, in the same transaction, its versions and instances (jobs stay, as history) */
  deleteProject(id: string): Promise<void>;

  insertVersion(v: Version): Promise<void>;

  /** insert or replace by id, desired and current parts together */
  saveInstance(i: Instance): Promise<void>;
  deleteInstance(id: string): Promise<void>;

  saveNode(n: Node): Promise<void>;

  /** inserts a whole tree (or more jobs of one) in one transaction */
  insertJobs(jobs: Job[]): Promise<void>;
  updateJob(id: string, patch: Partial<Pick<Job, 'state' | 'error' | 'startedAt' | 'finishedAt' | 'params'>>): Promise<void>;
  getJob(id: string): Promise<Job | null>;
  /** all jobs of a tree, ordered by depth-first position */
  getJobTree(rootId: string): Promise<Job[]>;
  listJobs(filter: JobFilter): Promise<Job[]>;
  appendJobLog(lines: JobLogLine[]): Promise<void>;
  /** log lines of one job in order; `afterSeq` for incremental reads; each line carries its seq */
  getJobLog(jobId: string, afterSeq?: number): Promise<Array<JobLogLine & { seq: number }>>;
}
