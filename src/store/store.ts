// The Store: the controller's durable copy of desired state, job history and tokens. Only the controller imports it.
import type { ConfigVars, Instance, Job, JobLogLine, JobState, JobTags, Node, Project, Version, Workspace } from '../core/model.ts';
import { EnjinError } from '../core/errors.ts';
import type { Notification } from '../core/messages.ts';

export interface TokenRecord {
  id: string;
  name: string;
  /** sha256 hex of the secret; the secret itself is never stored */
  hash: string;
  /** null: global (admin) token */
  workspaceId: string | null;
  createdAt: string;
}

/** A join token as stored: the secret itself is never kept. */
export interface JoinTokenRecord {
  id: string;
  /** sha256 hex of the secret */
  hash: string;
  /** reusable: any number of joins until it expires; otherwise one */
  reusable: boolean;
  expiresAt: string;
  /** the last join that used it; a single-use token with usedAt is spent */
  usedAt: string | null;
  createdAt: string;
}

/** What consuming a join token came to: the token, or why it cannot be used. */
export type JoinTokenUse = { ok: true; token: JoinTokenRecord } | { ok: false; reason: 'unknown' | 'expired' | 'used' };

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

/** A controller process known to the store: its heartbeat row (migration 0005). */
export interface ControllerRecord {
  id: string;
  apiUrl: string;
  startedAt: string;
  lastSeenAt: string;
  /** set while this controller holds the leader lock */
  leaderSince: string | null;
}

/**
 * The leader lock: a PostgreSQL advisory lock held on a connection of its own, so it lives exactly as long as that
 * session (a dead process's lock is released by the server at once) and pool churn can never drop it.
 */
export interface LeaderLock {
  /** tries to take the lock (connecting first if needed); false: another session holds it */
  tryAcquire(): Promise<boolean>;
  /** true: the session holding the lock answered; false or a throw: the session is gone, so is the lock */
  check(): Promise<boolean>;
  /** drops the session (and with it the lock) */
  release(): Promise<void>;
}

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

/** A package stored in the database, cut into `chunks` rows of `chunkSize` bytes (the last one shorter). */
export interface StoredPackage {
  sha256: string;
  size: number;
  chunkSize: number;
  chunks: number;
}

/** Package blobs in the store (see migration 0006_package_blobs); the controller uses them with PostgreSQL only. */
export interface PackageBlobs {
  /**
   * Stores a package whose bytes `chunks` yields, every chunk `chunkSize` bytes but the last, in one transaction: it
   * is there whole or not at all. Resolves false (reading nothing more) when the same package is stored already.
   */
  put(sha256: string, size: number, chunkSize: number, chunks: AsyncIterable<Uint8Array>): Promise<boolean>;
  get(sha256: string): Promise<StoredPackage | null>;
  /** chunks first..last (inclusive) in order; fewer when the package is gone or shorter */
  readChunks(sha256: string, first: number, last: number): Promise<Buffer[]>;
  delete(sha256: string): Promise<void>;
}

/**
 * Seals config vars for the store and opens them again (AES-256-GCM under the controller's master key, see
 * config-cipher.ts): the store never holds a config value in plain text.
 */
export interface ConfigSealer {
  seal(value: ConfigVars): string;
  unseal(sealed: string): ConfigVars;
}

/** Which events to list: newest `limit`, of a project or service, after a seq (following). */
export interface EventFilter {
  project?: string;
  service?: string;
  afterSeq?: number;
  limit: number;
}

/** An event as stored: a notification with its place in the order. */
export type StoredEvent = Notification & { seq: number };

export interface Store {
  readonly backend: 'pglite' | 'postgres';
  /** package blobs in the database (a wrapper of the store passes its inner store's on) */
  readonly packageBlobs?: PackageBlobs;
  /** loads the working set; migrations have already run in open */
  load(): Promise<StoreSnapshot>;
  close(): Promise<void>;

  insertWorkspace(w: Workspace): Promise<void>;

  insertToken(t: TokenRecord): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | null>;
  /** every token, so they can be checked in memory while the store is away */
  listTokens(): Promise<TokenRecord[]>;

  /** answers when the store can be reached (a trivial query) */
  ping(): Promise<void>;

  /** insert or replace a controller's heartbeat row */
  saveController(c: ControllerRecord): Promise<void>;
  listControllers(): Promise<ControllerRecord[]>;
  /** forgets controllers last seen before `before` (earlier runs, long gone) */
  deleteControllersSeenBefore(before: string): Promise<void>;
  /**
   * A new leader lock on a connection of its own; absent for the embedded store (one process only: it always leads).
   */
  openLeaderLock?(): LeaderLock;

  insertJoinToken(t: JoinTokenRecord): Promise<void>;
  /**
   * Uses the join token with this hash at `at`, atomically: of two joins racing for a single-use token exactly one
   * gets ok. A reusable token records its last use and stays usable until it expires.
   */
  consumeJoinToken(hash: string, at: string): Promise<JoinTokenUse>;
  /** records a controller's public key (base64 SPKI DER); a controller keeps its key, so an existing row stays */
  saveControllerKey(id: string, publicKey: string, at: string): Promise<void>;
  controllerKeys(): Promise<Array<{ id: string; publicKey: string }>>;

  /** insert or replace by id */
  saveProject(p: Project): Promise<void>;
  /** deletes the project and, in the same transaction, its versions and instances (jobs stay, as history) */
  deleteProject(id: string): Promise<void>;

  insertVersion(v: Version): Promise<void>;

  /** insert or replace by id, desired and current parts together */
  saveInstance(i: Instance): Promise<void>;
  deleteInstance(id: string): Promise<void>;

  saveNode(n: Node): Promise<void>;
  /** forgets a node and, in the same transaction, the instance rows placed on it; a node already gone is not an error */
  deleteNode(id: string): Promise<void>;

  /** inserts a whole tree (or more jobs of one) in one transaction */
  insertJobs(jobs: Job[]): Promise<void>;
  updateJob(id: string, patch: Partial<Pick<Job, 'state' | 'error' | 'startedAt' | 'finishedAt' | 'params' | 'tags'>>): Promise<void>;
  getJob(id: string): Promise<Job | null>;
  /** all jobs of a tree, ordered by depth-first position */
  getJobTree(rootId: string): Promise<Job[]>;
  listJobs(filter: JobFilter): Promise<Job[]>;
  appendJobLog(lines: JobLogLine[]): Promise<void>;
  /** log lines of one job in order; `afterSeq` for incremental reads; each line carries its seq */
  getJobLog(jobId: string, afterSeq?: number): Promise<Array<JobLogLine & { seq: number }>>;

  /** events in the order given, numbered by the store */
  appendEvents(events: Notification[]): Promise<void>;
  listEvents(filter: EventFilter): Promise<StoredEvent[]>;
  /** forgets events older than `at`; resolves how many */
  deleteEventsBefore(at: string): Promise<number>;
}
