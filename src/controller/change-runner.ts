// Runs the project changes through their queues: admits each request by the rules (change-queue.ts), files waiting
// ones as queued job roots, starts each when its turn comes, and keeps the one applier serialized.
import { conflict, EnjinError } from '../core/errors.ts';
import type { Job, Project } from '../core/model.ts';
import { componentLogger } from '../log/logger.ts';
import type { JobEngine, JobSpec } from './jobs/engine.ts';
import { ChangeQueue, type Admission, type ChangeCategory, type ChangeTicket } from './change-queue.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('controller');

/** Trees that roll a new release out (their target version is remembered, so a second deploy of it joins them). */
const RELEASING: ReadonlySet<string> = new Set(['deploy', 'rollback', 'config']);

/** What a request is, for the queue's rules (see change-queue.ts). */
export interface ChangeRequest {
  category: ChangeCategory;
  services: string[] | null;
  kind: string;
  title: string;
  force?: boolean;
  /** the version a deploy rolls out */
  target?: string;
  /** plans with the project as it is when it runs, stores what it decides and starts the tree (startTree) */
  run: () => Promise<Job | null>;
}

/** A change waiting in its project's queue: what it is, and how it is planned and started when its turn comes. */
interface WaitingChange {
  ticket: ChangeTicket;
  target?: string;
  run: () => Promise<Job | null>;
}

export class ChangeRunner {
  private applying: Promise<unknown> = Promise.resolve();
  /** the trees running and the changes waiting, per project */
  private readonly queue = new ChangeQueue();
  private readonly waiting = new Map<string, WaitingChange>();
  /** root id → the version its tree rolls out */
  private readonly targets = new Map<string, string>();
  /** the change being started now (set around its run, which is serialized): startTree files its tree under it */
  private starting: { ticket: ChangeTicket; queuedRoot?: Job } | null = null;
  /** queued roots by id, as the engine handed them out */
  private readonly queuedRoots = new Map<string, Job>();

  constructor(private readonly jobs: JobEngine, private readonly state: ControllerState) {
    jobs.onQueuedAbort = (root, reason) => this.serialized(() => this.dropWaiting(root, reason));
  }

  /**
   * Stepping down: the changes waiting here end: they were never planned, and the queue lives in the leader's memory only (see
   * change-queue.ts); the next leader's recovery ends any row a failed write left queued.
   */
  forgetQueued(): void {
    for (const t of this.queue.clear()) {
      const root = this.waiting.get(t.id);
      this.waiting.delete(t.id);
      if (!root) continue;
      void this.jobs.getJob(t.id)
        .then((job) => this.jobs.endQueued(job, 'aborted', 'this controller stopped leading before this queued change started; nothing of it ran — request it again'))
        .catch((err: unknown) => log.warn({ err, jobId: t.id }, 'ending a queued change on stepping down failed; the next leader ends it'));
    }
    this.targets.clear();
    this.queuedRoots.clear();
  }

  /** Where a queued change stands: its place in its project's queue (1: next) and the tree it waits for. */
  queuePlace(rootId: string): { position: number; behind: string | null } | null {
    const position = this.queue.position(rootId);
    const t = this.waiting.get(rootId)?.ticket;
    if (position === null || !t) return null;
    const ahead = position > 1 ? this.queue.waitingOf(t.projectId)[position - 2].id : null;
    return { position, behind: this.queue.runningOf(t.projectId)[0]?.id ?? ahead };
  }

  /** The running or waiting change that rolls `versionId` out, if any. */
  changeRollingOut(projectId: string, versionId: string): Job | null {
    for (const t of this.queue.runningOf(projectId)) {
      if (this.targets.get(t.id) === versionId) return this.jobs.activeRoots().find((r) => r.id === t.id) ?? null;
    }
    for (const t of this.queue.waitingOf(projectId)) {
      if (this.waiting.get(t.id)?.target === versionId) return this.queuedRoots.get(t.id) ?? null;
    }
    return null;
  }

  /** What the queue's rules make of a request now; refusals are thrown. */
  admit(project: Project, r: ChangeRequest): Admission {
    const a = this.queue.admit({ id: '', projectId: project.id, category: r.category, services: r.services, force: r.force });
    if (!a.now && !a.queue && 'refuse' in a) {
      const by = this.jobs.activeRoots().find((j) => j.id === a.refuse.id);
      throw conflict('project_stopping', `${project.name}${a.refuse.services ? ` ${a.refuse.services.join(', ')}` : ''} is being ${a.refuse.category === 'destroy' ? 'destroyed' : 'stopped'} by job ${a.refuse.id}${by ? ` (${by.title})` : ''}; wait for it to end (\`enjin jobs show ${a.refuse.id} -f\`)${r.category === 'stop' ? ' or force it (`enjin stop --force`)' : ''}, then ask again`);
    }
    return a;
  }

  /** Decides a request (see change-queue.ts) and acts on it: runs it now, files it in the queue, or skips it. */
  async submit(project: Project, r: ChangeRequest): Promise<Job | null> {
    return this.act(project, r, this.admit(project, r));
  }

  async act(project: Project, r: ChangeRequest, a: Admission): Promise<Job | null> {
    const ticket: ChangeTicket = { id: '', projectId: project.id, category: r.category, services: r.services, force: r.force };
    if (!a.now) {
      if (!('queue' in a) || !a.queue) return null;
      const root = await this.jobs.queue({
        kind: r.kind, title: r.title, params: { projectId: project.id },
        tags: { workspace: this.state.workspaces.get(project.workspaceId)?.name ?? 'default', project: project.name, ...(r.services?.length === 1 ? { service: r.services[0] } : {}) },
      });
      ticket.id = root.id;
      this.queue.enqueue(ticket);
      this.queuedRoots.set(root.id, root);
      this.waiting.set(root.id, { ticket, target: r.target, run: r.run });
      this.jobs.appendLog(root.id, `queued behind ${a.behind.id} (position ${this.queue.position(root.id)}): planned when it starts`);
      return root;
    }
    const reason = `${r.title} was requested`;
    for (const e of a.end) {
      // Not awaited: the aborted tree undoes its own work while this one starts (its end frees the queue).
      void this.jobs.abort(e.id, `ended: ${reason}`).catch((err: unknown) => log.warn({ err, jobId: e.id }, 'ending a tree for a stop failed; it ends on its own'));
    }
    for (const d of a.drop) {
      const root = this.queuedRoots.get(d.id);
      if (root) await this.dropWaiting(root, `dropped: ${reason}`);
    }
    return this.runNow(ticket, r.run);
  }

  private async runNow(ticket: ChangeTicket, run: () => Promise<Job | null>, queuedRoot?: Job): Promise<Job | null> {
    this.starting = { ticket, queuedRoot };
    try {
      return await run();
    } finally {
      this.starting = null;
    }
  }

  /** Takes a waiting change out of its queue for good (a user's abort, a stop's drop); those behind it move up. */
  private async dropWaiting(root: Job, reason: string): Promise<void> {
    const w = this.waiting.get(root.id);
    this.queue.remove(root.id);
    this.waiting.delete(root.id);
    this.queuedRoots.delete(root.id);
    if (this.jobs.isQueued(root.id)) await this.jobs.endQueued(root, 'aborted', reason);
    if (w) this.pump(w.ticket.projectId);
  }

  /** Starts the project's waiting changes whose turn it is, in order (each planned now, with the project as it is). */
  pump(projectId: string): void {
    void this.serialized(async () => {
      for (let t = this.queue.next(projectId); t; t = this.queue.next(projectId)) {
        const w = this.waiting.get(t.id);
        const root = this.queuedRoots.get(t.id);
        this.queue.remove(t.id);
        this.waiting.delete(t.id);
        this.queuedRoots.delete(t.id);
        if (!w || !root || !this.jobs.isQueued(root.id)) continue;
        try {
          const job = await this.runNow(t, w.run, root);
          if (!job) await this.jobs.endQueued(root, 'succeeded', 'nothing to do once its turn came: the project already is as asked');
        } catch (err) {
          log.info({ err, jobId: root.id }, 'a queued change could not be planned when its turn came');
          if (this.jobs.isQueued(root.id)) await this.jobs.endQueued(root, 'failed', `could not be planned when its turn came: ${(err as Error).message}`);
        }
      }
    }).catch((err: unknown) => log.error({ err, projectId }, 'starting the queued changes of a project failed; the next tree to end tries again'));
  }

  /** Starts the tree of the change being run (see runNow) and files it as running in the project's queue. */
  async startTree(project: Project, tree: JobSpec): Promise<Job> {
    const starting = this.starting;
    if (!starting) throw new EnjinError('internal', `a tree for ${project.name} was started outside the queue; this is a bug in enjin`, { status: 500 });
    const root = await this.jobs.start(tree, starting.queuedRoot);
    starting.ticket.id = root.id;
    this.queue.started(starting.ticket);
    const target = root.params.targetVersionId;
    if (typeof target === 'string' && RELEASING.has(root.kind)) this.targets.set(root.id, target);
    return root;
  }

  /** The one applier: plans are computed and turned into trees one at a time, so two plans never race. */
  serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.applying.then(fn, fn);
    // The caller gets the failure through `run`; the chain only needs to know the turn is over.
    this.applying = run.then(() => undefined, () => undefined);
    return run;
  }

  /** A tree ended: its place among the project's running trees is free (call pump after what follows its end). */
  treeEnded(rootId: string): void {
    this.queue.remove(rootId);
    this.targets.delete(rootId);
  }
}
