// The store as the controller uses it: rows the controller owns as supervisor (instances, nodes, jobs, job logs) are
// written behind, queued in order while the store is away, so supervision goes on from memory; desired-state writes
// are refused with store_unavailable instead, before anything changes; a follower writes nothing.
import { EnjinError } from '../core/errors.ts';
import type { Instance, Job, JobLogLine, Node, Project, Version, Workspace } from '../core/model.ts';
import { componentLogger } from '../log/logger.ts';
import type { ControllerRecord, JobFilter, JoinTokenRecord, JoinTokenUse, LeaderLock, PackageBlobs, Store, StoreSnapshot, TokenRecord, EventFilter, StoredEvent } from './store.ts';
import type { Notification } from '../core/messages.ts';
import { storeUnavailable } from './store-errors.ts';

const log = componentLogger('store');

const RETRY_MS = 1_000;
/** a store that takes longer than this to answer a trivial query counts as away for a desired-state change */
const PING_TIMEOUT_MS = 5_000;

interface QueuedWrite {
  /** what the write is, for logs: "save instance inst_…" */
  what: string;
  /** same key, same row: a later save replaces the queued one instead of queueing another */
  key: string | null;
  run: () => Promise<void>;
}

function isOutage(err: unknown): boolean {
  return err instanceof EnjinError && err.code === 'store_unavailable';
}

export interface WriteBehindOptions {
  /** called after every successful desired-state write (the leader tells followers to reload) */
  onDesiredWrite?: () => void;
  retryMs?: number;
}

export class WriteBehindStore implements Store {
  readonly backend: 'pglite' | 'postgres';
  readonly #inner: Store;
  readonly #queue: QueuedWrite[] = [];
  /** key → its queued save, while that save is the last queued write of its row */
  readonly #lastSave = new Map<string, QueuedWrite>();
  readonly #retryMs: number;
  #onDesiredWrite: () => void;
  #timer: NodeJS.Timeout | null = null;
  #draining: Promise<void> | null = null;
  #available = true;
  #follower = false;
  #closed = false;

  constructor(inner: Store, opts: WriteBehindOptions = {}) {
    this.#inner = inner;
    this.backend = inner.backend;
    this.#retryMs = opts.retryMs ?? RETRY_MS;
    this.#onDesiredWrite = opts.onDesiredWrite ?? (() => {});
    if (inner.openLeaderLock) this.openLeaderLock = () => inner.openLeaderLock!();
    // Package blobs are written whole in their own transaction, or the upload fails: never queued.
    this.packageBlobs = inner.packageBlobs;
  }

  openLeaderLock?: () => LeaderLock;
  readonly packageBlobs?: PackageBlobs;

  /** the store the writes go to */
  get inner(): Store {
    return this.#inner;
  }

  /** false since the last write or ping failed for an outage, until one succeeds */
  get available(): boolean {
    return this.#available;
  }

  /** rows waiting for the store */
  get pending(): number {
    return this.#queue.length;
  }

  set onDesiredWrite(fn: () => void) {
    this.#onDesiredWrite = fn;
  }

  /**
   * A follower writes nothing: the leader owns every row. Its supervision rows are dropped (the leader writes its own),
   * and desired-state writes never get here (the API refuses them first).
   */
  setFollower(follower: boolean): void {
    this.#follower = follower;
    if (follower && this.#queue.length) {
      log.warn({ dropped: this.#queue.length }, 'stepped down with rows still queued for the store; the new leader writes its own');
      this.#queue.length = 0;
      this.#lastSave.clear();
    }
  }

  /**
   * Throws store_unavailable unless the store answers now and every queued row has been written: a desired-state
   * change is only accepted when it can be stored at once, so nothing is half-applied in memory.
   */
  async assertWritable(): Promise<void> {
    if (this.#queue.length) await this.drain();
    if (this.#queue.length) throw this.#unavailable(new Error(`${this.#queue.length} earlier changes are still waiting to be written`));
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#unavailable(new Error(`no answer within ${PING_TIMEOUT_MS / 1000} s`))), PING_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.#inner.ping(), slow]);
      this.#available = true;
    } catch (err) {
      if (isOutage(err)) this.#available = false;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // --- reads and the controller table pass through ---

  load(): Promise<StoreSnapshot> {
    return this.#inner.load();
  }
  findTokenByHash(hash: string): Promise<TokenRecord | null> {
    return this.#inner.findTokenByHash(hash);
  }
  listTokens(): Promise<TokenRecord[]> {
    return this.#inner.listTokens();
  }
  async ping(): Promise<void> {
    await this.#inner.ping();
    this.#available = true;
  }
  saveController(c: ControllerRecord): Promise<void> {
    return this.#inner.saveController(c);
  }
  listControllers(): Promise<ControllerRecord[]> {
    return this.#inner.listControllers();
  }
  deleteControllersSeenBefore(before: string): Promise<void> {
    return this.#inner.deleteControllersSeenBefore(before);
  }
  // Spending a join token is decided by the store itself (one UPDATE), so it cannot be queued: it answers or fails.
  consumeJoinToken(hash: string, at: string): Promise<JoinTokenUse> {
    return this.#inner.consumeJoinToken(hash, at);
  }
  saveControllerKey(id: string, publicKey: string, at: string): Promise<void> {
    return this.#inner.saveControllerKey(id, publicKey, at);
  }
  controllerKeys(): Promise<Array<{ id: string; publicKey: string }>> {
    return this.#inner.controllerKeys();
  }
  getJob(id: string): Promise<Job | null> {
    return this.#inner.getJob(id);
  }
  getJobTree(rootId: string): Promise<Job[]> {
    return this.#inner.getJobTree(rootId);
  }
  listJobs(filter: JobFilter): Promise<Job[]> {
    return this.#inner.listJobs(filter);
  }
  getJobLog(jobId: string, afterSeq?: number): Promise<Array<JobLogLine & { seq: number }>> {
    return this.#inner.getJobLog(jobId, afterSeq);
  }

  // --- desired state: written now or refused ---

  insertWorkspace(w: Workspace): Promise<void> {
    return this.#desired(() => this.#inner.insertWorkspace(w));
  }
  insertToken(t: TokenRecord): Promise<void> {
    return this.#desired(() => this.#inner.insertToken(t));
  }
  saveProject(p: Project): Promise<void> {
    return this.#desired(() => this.#inner.saveProject(p));
  }
  deleteProject(id: string): Promise<void> {
    return this.#desired(() => this.#inner.deleteProject(id));
  }
  insertVersion(v: Version): Promise<void> {
    return this.#desired(() => this.#inner.insertVersion(v));
  }
  insertJoinToken(t: JoinTokenRecord): Promise<void> {
    return this.#desired(() => this.#inner.insertJoinToken(t));
  }
  /** removing a node is the operator's decision: written now or refused */
  deleteNode(id: string): Promise<void> {
    return this.#desired(() => this.#inner.deleteNode(id));
  }

  // --- supervision rows: written behind ---

  saveInstance(i: Instance): Promise<void> {
    const row = structuredClone(i);
    return this.#behind(`save instance ${i.id}`, `instance:${i.id}`, () => this.#inner.saveInstance(row));
  }
  deleteInstance(id: string): Promise<void> {
    return this.#behind(`delete instance ${id}`, null, () => this.#inner.deleteInstance(id), `instance:${id}`);
  }
  saveNode(n: Node): Promise<void> {
    const row = structuredClone(n);
    return this.#behind(`save node ${n.id}`, `node:${n.id}`, () => this.#inner.saveNode(row));
  }
  insertJobs(jobs: Job[]): Promise<void> {
    const rows = structuredClone(jobs);
    return this.#behind(`insert ${jobs.length} jobs of tree ${jobs[0]?.rootId}`, null, () => this.#inner.insertJobs(rows));
  }
  updateJob(id: string, patch: Parameters<Store['updateJob']>[1]): Promise<void> {
    const copy = structuredClone(patch);
    return this.#behind(`update job ${id}`, null, () => this.#inner.updateJob(id, copy));
  }
  appendEvents(events: Notification[]): Promise<void> {
    const copy = structuredClone(events);
    return this.#behind(`append ${events.length} event(s)`, null, () => this.#inner.appendEvents(copy));
  }
  listEvents(filter: EventFilter): Promise<StoredEvent[]> {
    return this.#inner.listEvents(filter);
  }
  deleteEventsBefore(at: string): Promise<number> {
    return this.#inner.deleteEventsBefore(at);
  }
  appendJobLog(lines: JobLogLine[]): Promise<void> {
    const copy = lines.slice();
    return this.#behind(`append ${lines.length} job log lines`, null, () => this.#inner.appendJobLog(copy));
  }

  /** Writes queued rows in order until the queue is empty or the store fails again. */
  drain(): Promise<void> {
    this.#draining ??= (async () => {
      let written = 0;
      try {
        while (this.#queue.length && !this.#follower && !this.#closed) {
          const next = this.#queue[0];
          try {
            await next.run();
            this.#available = true;
            written++;
          } catch (err) {
            if (isOutage(err)) {
              this.#available = false;
              this.#schedule();
              return;
            }
            // The store answered and refused this row (it contradicts what is stored): retrying cannot help.
            log.error({ err, write: next.what }, 'the store refused a queued write; it is dropped and the next one written');
          }
          this.#queue.shift();
          if (next.key && this.#lastSave.get(next.key) === next) this.#lastSave.delete(next.key);
        }
        if (written && this.#queue.length === 0) log.info({ written }, 'the store answers: every queued row is written');
      } finally {
        this.#draining = null;
      }
    })();
    return this.#draining;
  }

  /**
   * Writes what it can of the queue once more and stops retrying (the controller is stopping; whoever opened the
   * store closes it). What the store never took is logged: the nodes report current state again on the next start.
   */
  async stop(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#queue.length) await this.drain();
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#queue.length) log.error({ lost: this.#queue.length }, 'stopping with rows the store never took');
  }

  async close(): Promise<void> {
    await this.stop();
    await this.#inner.close();
  }

  async #desired(write: () => Promise<void>): Promise<void> {
    if (this.#follower) throw new EnjinError('not_leader', 'this controller is not the leader; send writes to the leader (`GET /v1/cluster` names it)', { status: 503 });
    if (this.#queue.length) await this.drain();
    if (this.#queue.length) throw this.#unavailable(new Error(`${this.#queue.length} earlier changes are still waiting to be written`));
    try {
      await write();
      this.#available = true;
    } catch (err) {
      if (isOutage(err)) this.#available = false;
      throw err;
    }
    this.#onDesiredWrite();
  }

  /** `key`: coalesces saves of one row; `touches`: a non-save write of that row, which ends coalescing. */
  async #behind(what: string, key: string | null, run: () => Promise<void>, touches?: string): Promise<void> {
    if (this.#follower) return;
    const entry: QueuedWrite = { what, key, run };
    if (this.#queue.length === 0 && this.#draining === null) {
      try {
        await run();
        this.#available = true;
        return;
      } catch (err) {
        if (!isOutage(err)) throw err;
        this.#available = false;
        log.warn({ write: what }, 'the store is unreachable: rows are queued in memory and written in order when it answers again');
      }
    }
    const queued = key ? this.#lastSave.get(key) : undefined;
    if (queued) {
      // The row's queued save is its last queued write: write the newest value in its place.
      queued.run = run;
      return;
    }
    this.#queue.push(entry);
    if (key) this.#lastSave.set(key, entry);
    if (touches) this.#lastSave.delete(touches);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.drain();
    }, this.#retryMs);
    this.#timer.unref();
  }

  #unavailable(cause: unknown): EnjinError {
    return storeUnavailable(this.#inner.backend, cause);
  }
}
