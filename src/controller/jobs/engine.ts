// The job engine: runs job trees (leaves first, siblings in parallel, a parent once all its children succeeded),
// aborts a tree on failure or on request, keeps each job's log, and writes every transition through to the store.
import { EventEmitter } from 'node:events';
import { EnjinError, notFound } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { TERMINAL_JOB_STATES, type Job, type JobLogLine, type JobTags } from '../../core/model.ts';
import { nestTree, type JobAction, type JobSpec, type TreeFinished } from './job-types.ts';
import type { Store } from '../../store/store.ts';
import type { JobTreeView } from '../../core/api.ts';

export type { JobTreeView } from '../../core/api.ts';

export type { JobAction, JobContext, JobSpec, TreeFinished } from './job-types.ts';

interface ActiveTree {
  root: Job;
  jobs: Map<string, Job>;
  children: Map<string, Job[]>;
  running: Map<string, AbortController>;
  /** jobs whose own action was started (the root shows 'running' long before its own action, see run()) */
  launched: Set<string>;
  done: Promise<Job>;
  resolve: (root: Job) => void;
  /** why the tree is ending (first failure or the user's abort) */
  ending: { state: 'failed' | 'aborted'; reason: string } | null;
}

const LOG_FLUSH_MS = 200;
/** a job's log kept in memory for live views; the store has all of it */
const MAX_LOG_LINE = 4000;
/** lines per job of a running tree kept in memory for views while the store is away */
const MAX_TAIL_LINES = 500;

export class JobEngine {
  private readonly store: Store;
  private readonly actions: Record<string, JobAction>;
  private readonly onTreeFinished: TreeFinished;
  private readonly active = new Map<string, ActiveTree>();
  /** roots waiting in their project's queue (state 'queued'): listed and abortable, not planned yet */
  private readonly queued = new Map<string, Job>();
  /** who takes a queued root out of its queue when a user aborts it (the project's queue); absent: only the row ends */
  onQueuedAbort: ((root: Job, reason: string) => Promise<void>) | null = null;
  /** job id → its root, for the jobs of running trees: log events name their tree without a search */
  private readonly rootOf = new Map<string, string>();
  private pendingLog: JobLogLine[] = [];
  /** the recent log lines of each job of a running tree: what a view shows while the store cannot be read */
  private readonly tails = new Map<string, string[]>();
  /** numbers every log line this engine emits, so a live view can join a snapshot without gaps or repeats */
  private logSeq = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  /** emits 'change' (job) on every transition and 'log' (line) on every log line: live views listen here */
  readonly events = new EventEmitter();

  constructor(opts: { store: Store; actions: Record<string, JobAction>; onTreeFinished?: TreeFinished }) {
    this.store = opts.store;
    this.actions = opts.actions;
    this.onTreeFinished = opts.onTreeFinished ?? (() => {});
    this.events.setMaxListeners(0);
  }

  /**
   * Called at start, and on taking over as leader, with the jobs of trees that had not finished when the controller
   * (or the previous leader) stopped. Nothing survives a process restart mid-action, so each such tree is ended with a
   * reason (`why`) (its waiting jobs aborted, its running ones
   * failed) and handed to onTreeFinished, which decides how to converge (the reconciler picks up from there).
   */
  async recover(unfinished: Job[], why = 'the controller stopped while this job ran'): Promise<Job[]> {
    const byRoot = new Map<string, Job[]>();
    for (const j of unfinished) byRoot.set(j.rootId, [...(byRoot.get(j.rootId) ?? []), j]);
    const ended: Job[] = [];
    const now = new Date().toISOString();
    for (const [rootId, jobs] of byRoot) {
      // A tree this engine runs itself is not left over (a takeover reloads while nothing runs, but be sure).
      if (this.active.has(rootId)) continue;
      const reason = `interrupted: ${why}`;
      const root = jobs.find((j) => j.id === rootId);
      if (root?.state === 'queued') {
        // Never planned, so nothing of it ran: it ends aborted, and nothing needs converging after it.
        await this.endQueued(root, 'aborted', `${why} before this queued change started; nothing of it ran — request it again`);
        continue;
      }
      for (const j of jobs) {
        if (TERMINAL_JOB_STATES.has(j.state)) continue;
        const state = j.state === 'running' || j.id === rootId ? 'failed' : 'aborted';
        Object.assign(j, { state, error: j.id === rootId ? reason : state === 'failed' ? reason : 'aborted: the tree was interrupted', finishedAt: now });
        await this.store.updateJob(j.id, { state: j.state, error: j.error, finishedAt: now });
        // Listings (the job index, watchers) follow changes: an ended tree must not stay listed as waiting.
        this.events.emit('change', j);
        this.appendLog(j.id, j.error ?? reason);
      }
      if (root) {
        ended.push(root);
        await this.onTreeFinished(root, jobs);
      }
    }
    await this.flushLogs();
    return ended;
  }

  /**
   * Persists the root of a change that waits in its project's queue (state 'queued'), to be started later with
   * `start(spec, root)` once it is planned, or ended with `endQueued`.
   */
  async queue(spec: Omit<JobSpec, 'children'>): Promise<Job> {
    const root: Job = {
      id: newId('job'), rootId: '', parentId: null, kind: spec.kind, title: spec.title, state: 'queued', tags: { ...spec.tags }, params: spec.params ?? {},
      error: null, createdAt: new Date().toISOString(), startedAt: null, finishedAt: null, position: 0,
    };
    root.rootId = root.id;
    if (!this.actions[root.kind]) throw new EnjinError('internal', `no action for job kind ${root.kind}`, { status: 500 });
    await this.store.insertJobs([root]);
    this.queued.set(root.id, root);
    this.events.emit('change', root);
    return root;
  }

  /** Ends a queued root that will never start (aborted, dropped, nothing to do, or its plan failed). */
  async endQueued(root: Job, state: 'succeeded' | 'failed' | 'aborted', reason: string): Promise<Job> {
    this.queued.delete(root.id);
    const finishedAt = new Date().toISOString();
    Object.assign(root, { state, error: state === 'succeeded' ? null : reason, finishedAt });
    this.events.emit('change', root);
    this.appendLog(root.id, reason);
    try {
      await this.store.updateJob(root.id, { state, error: root.error, finishedAt });
    } catch (err) {
      // Its row stays 'queued' in the store: the next leader's recovery ends it, as it ends every queued row.
      this.appendLog(root.id, `could not record state ${state}: ${(err as Error).message}`);
    }
    await this.flushLogs();
    return root;
  }

  isQueued(rootId: string): boolean {
    return this.queued.has(rootId);
  }

  /**
   * Persists a tree and starts running it; returns its root at once. `queuedRoot`: the tree of a change that waited in
   * the queue keeps that root's id (users follow it by that id) and takes the planned tree's tags and params.
   */
  async start(spec: JobSpec, queuedRoot?: Job): Promise<Job> {
    const now = new Date().toISOString();
    if (queuedRoot && !this.queued.has(queuedRoot.id)) throw new EnjinError('job_finished', `job ${queuedRoot.id} is no longer queued (${queuedRoot.state}); it cannot start`, { status: 409 });
    const rootId = queuedRoot?.id ?? newId('job');
    const jobs: Job[] = [];
    const add = (s: JobSpec, parentId: string | null, position: number, inherited: JobTags): void => {
      const id = parentId === null ? rootId : newId('job');
      const tags = { ...inherited, ...s.tags };
      jobs.push({
        id, rootId, parentId, kind: s.kind, title: s.title, state: 'waiting', tags, params: s.params ?? {},
        error: null, createdAt: now, startedAt: null, finishedAt: null, position,
      });
      (s.children ?? []).forEach((c, k) => add(c, id, k, { workspace: tags.workspace, project: tags.project }));
    };
    add(spec, null, 0, {});
    for (const j of jobs) {
      if (!this.actions[j.kind]) throw new EnjinError('internal', `no action for job kind ${j.kind}`, { status: 500 });
    }
    if (queuedRoot) {
      // Same row, now planned: it keeps its place in listings (created when it was requested).
      Object.assign(jobs[0], { createdAt: queuedRoot.createdAt, title: queuedRoot.title });
      await this.store.updateJob(rootId, { state: 'waiting', tags: jobs[0].tags, params: jobs[0].params });
      await this.store.insertJobs(jobs.slice(1));
      this.queued.delete(rootId);
    } else {
      await this.store.insertJobs(jobs);
    }

    let resolve!: (root: Job) => void;
    const done = new Promise<Job>((r) => (resolve = r));
    const tree: ActiveTree = { root: jobs[0], jobs: new Map(), children: new Map(), running: new Map(), launched: new Set(), done, resolve, ending: null };
    for (const j of jobs) {
      tree.jobs.set(j.id, j);
      this.rootOf.set(j.id, rootId);
      if (j.parentId) tree.children.set(j.parentId, [...(tree.children.get(j.parentId) ?? []), j]);
    }
    this.active.set(rootId, tree);
    for (const j of jobs) this.events.emit('change', j);
    this.pump(tree);
    return tree.root;
  }

  /** Resolves with the root once the tree is finished. */
  async wait(rootId: string): Promise<Job> {
    const tree = this.active.get(rootId);
    if (tree) return tree.done;
    const job = await this.store.getJob(rootId);
    if (!job) throw notFound(`job ${rootId}`);
    return job;
  }

  isActive(rootId: string): boolean {
    return this.active.has(rootId);
  }

  activeRoots(): Job[] {
    return [...this.active.values()].map((t) => t.root);
  }

  /** Aborts the tree a job belongs to: running jobs get their signal aborted, waiting ones are marked aborted. */
  async abort(jobId: string, reason = 'aborted by a user'): Promise<Job> {
    const job = await this.getJob(jobId);
    const waiting = this.queued.get(job.rootId);
    if (waiting) {
      // Taken out of its queue: it never runs, and the changes behind it move up.
      if (this.onQueuedAbort) await this.onQueuedAbort(waiting, reason);
      else await this.endQueued(waiting, 'aborted', reason);
      return waiting;
    }
    const tree = this.active.get(job.rootId);
    if (!tree) {
      throw new EnjinError('job_finished', `job ${job.rootId} has already ${job.state === 'succeeded' ? 'succeeded' : 'ended'}; nothing to abort`, { status: 409 });
    }
    this.endTree(tree, 'aborted', reason);
    return tree.done;
  }

  async getJob(id: string): Promise<Job> {
    const queued = this.queued.get(id);
    if (queued) return queued;
    for (const t of this.active.values()) {
      const j = t.jobs.get(id);
      if (j) return j;
    }
    const j = await this.store.getJob(id);
    if (!j) throw notFound(`job ${id}`, 'list jobs with `enjin jobs`');
    return j;
  }

  /** The tree a job belongs to, nested, optionally with every job's log. */
  async getTree(id: string, withLogs: boolean): Promise<JobTreeView> {
    return (await this.snapshot(id, withLogs)).tree;
  }

  /**
   * The tree and, with logs, the number of the first log line it does not contain: live 'log' events numbered from
   * there on complete it exactly.
   */
  async snapshot(id: string, withLogs: boolean): Promise<{ tree: JobTreeView; logsBefore: number }> {
    const job = await this.getJob(id);
    const tree = this.active.get(job.rootId);
    const queued = this.queued.get(job.rootId);
    const jobs = tree ? [...tree.jobs.values()].map((j) => ({ ...j })) : queued ? [{ ...queued }] : await this.store.getJobTree(job.rootId);
    const logs = new Map<string, string[]>();
    // Every line numbered below this is in the batch the flush below writes (or an earlier one).
    const logsBefore = this.logSeq;
    if (withLogs) {
      await this.flushLogs();
      try {
        await Promise.all(jobs.map(async (j) => logs.set(j.id, (await this.store.getJobLog(j.id)).map((l) => l.line))));
      } catch (err) {
        // A running tree's log is in memory too: with the store away it is shown from there (its recent lines).
        if (!tree || !(err instanceof EnjinError && err.code === 'store_unavailable')) throw err;
        for (const j of jobs) logs.set(j.id, [...(this.tails.get(j.id) ?? [])]);
      }
    }
    return { tree: nestTree(jobs, job.rootId, withLogs ? logs : null), logsBefore };
  }

  appendLog(jobId: string, line: string): void {
    const entry = { jobId, at: new Date().toISOString(), line: line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}…` : line };
    this.pendingLog.push(entry);
    // A root's id is its own root, so lines logged as its tree ends (after it left rootOf) still name it.
    this.events.emit('log', { ...entry, rootId: this.rootOf.get(jobId) ?? jobId, n: this.logSeq++ });
    if (this.rootOf.has(jobId)) {
      let tail = this.tails.get(jobId);
      if (!tail) this.tails.set(jobId, (tail = []));
      tail.push(entry.line);
      if (tail.length > MAX_TAIL_LINES) tail.splice(0, tail.length - MAX_TAIL_LINES);
    }
    this.flushTimer ??= setTimeout(() => void this.flushLogs(), LOG_FLUSH_MS);
  }

  async flushLogs(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const batch = this.pendingLog;
    this.pendingLog = [];
    // Chain flushes so log lines reach the store in order.
    this.flushing = this.flushing.then(async () => {
      if (batch.length) await this.store.appendJobLog(batch).catch(() => { this.pendingLog.unshift(...batch); });
    });
    await this.flushing;
  }

  /** Aborts every running tree (used on shutdown: they are recovered as interrupted on the next start). */
  async stop(): Promise<void> {
    await this.flushLogs();
    for (const t of this.active.values()) for (const c of t.running.values()) c.abort(new Error('the controller is stopping'));
  }

  // --- running ---

  private pump(tree: ActiveTree): void {
    if (tree.ending) return;
    for (const job of tree.jobs.values()) {
      if (tree.launched.has(job.id)) continue;
      // The root may already show 'running' (its tree is under way) without its own action having run.
      if (job.state !== 'waiting' && !(job === tree.root && job.state === 'running')) continue;
      const kids = tree.children.get(job.id) ?? [];
      if (kids.every((k) => k.state === 'succeeded')) void this.run(tree, job);
    }
  }

  private async run(tree: ActiveTree, job: Job): Promise<void> {
    const controller = new AbortController();
    tree.running.set(job.id, controller);
    tree.launched.add(job.id);
    const now = new Date().toISOString();
    // The root is the operation a user started (a deploy, a scale) and its own action runs last: it is running as
    // soon as any job of its tree is, not 'waiting' through a whole prepare.
    if (job !== tree.root && tree.root.state === 'waiting') void this.transition(tree.root, { state: 'running', startedAt: now });
    await this.transition(job, { state: 'running', startedAt: job.startedAt ?? now });
    let failure: string | null = null;
    try {
      await this.actions[job.kind]({ job, root: tree.root, signal: controller.signal, log: (line) => this.appendLog(job.id, line) });
      if (controller.signal.aborted) failure = String((controller.signal.reason as Error)?.message ?? 'aborted');
    } catch (err) {
      failure = err instanceof Error ? err.message : String(err);
    }
    tree.running.delete(job.id);
    const finishedAt = new Date().toISOString();
    if (failure === null) {
      await this.transition(job, { state: 'succeeded', finishedAt });
      if (job.id === tree.root.id) return this.finish(tree, 'succeeded', null);
      return this.pump(tree);
    }
    if (tree.ending) {
      // The tree was already ending (a sibling failed, or a user aborted): this job stopped because it was told to.
      await this.transition(job, { state: 'aborted', error: tree.ending.reason, finishedAt });
      this.appendLog(job.id, `aborted: ${tree.ending.reason}`);
    } else {
      await this.transition(job, { state: 'failed', error: failure, finishedAt });
      this.appendLog(job.id, `failed: ${failure}`);
      this.endTree(tree, 'failed', `${job.title}: ${failure}`);
    }
    if (tree.running.size === 0) await this.finish(tree, tree.ending!.state, tree.ending!.reason);
  }

  private endTree(tree: ActiveTree, state: 'failed' | 'aborted', reason: string): void {
    if (tree.ending) return;
    tree.ending = { state, reason };
    const now = new Date().toISOString();
    for (const job of tree.jobs.values()) {
      if (job.state === 'waiting') void this.transition(job, { state: 'aborted', error: reason, finishedAt: now });
    }
    for (const c of tree.running.values()) c.abort(new Error(reason));
    if (tree.running.size === 0) void this.finish(tree, state, reason);
  }

  private async finish(tree: ActiveTree, state: 'succeeded' | 'failed' | 'aborted', reason: string | null): Promise<void> {
    if (!this.active.has(tree.root.id)) return;
    this.active.delete(tree.root.id);
    const root = tree.root;
    // The root carries the tree's outcome: failed for a failure anywhere below it, aborted for a user's abort.
    const error = state === 'succeeded' ? null : reason;
    if (root.state !== state || root.error !== error) {
      await this.transition(root, { state, error, finishedAt: new Date().toISOString() });
    }
    try {
      await this.onTreeFinished(root, [...tree.jobs.values()]);
    } catch (err) {
      this.appendLog(root.id, `after the tree ended: ${(err as Error).message}`);
    }
    await this.flushLogs();
    for (const id of tree.jobs.keys()) {
      this.rootOf.delete(id);
      this.tails.delete(id);
    }
    tree.resolve(root);
  }

  private async transition(job: Job, patch: Partial<Job>): Promise<void> {
    Object.assign(job, patch);
    this.events.emit('change', job);
    try {
      await this.store.updateJob(job.id, { state: job.state, error: job.error, startedAt: job.startedAt, finishedAt: job.finishedAt });
    } catch (err) {
      // The in-memory tree stays authoritative while the store is away; the next transition writes the state again.
      this.appendLog(job.id, `could not record state ${job.state}: ${(err as Error).message}`);
    }
  }
}
