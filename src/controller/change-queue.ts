// The task queue's rules: which change runs now, which waits in its project's queue (FIFO), which ends the running
// ones, which is refused. Pure bookkeeping: ProjectChanges plans, starts and aborts; this decides and remembers order.
//
// The queue lives in the leader's memory. Each waiting change is also a job row in state 'queued', so every
// controller lists it and `enjin jobs abort` finds it; but a waiting change was never planned and its request (an
// upload to release, a scale) is not kept beyond the leader, so when the leader stops leading, or a controller
// starts and finds queued rows, they end aborted with a reason that says to ask again. Nothing of them ever ran, so
// nothing is left half done; replaying them on a new leader could act on a request its maker has long given up on.

/** What a job tree does to its project, as far as the rules care. */
export type ChangeCategory =
  /** a new release planned whole at its start (today's deploy, rollback, config release, revert) */
  | 'rollout'
  /** a rollout that plans again after each step: a scale may run beside it */
  | 'rolling'
  | 'scale'
  | 'restart'
  /** `enjin start`: brings stopped services back */
  | 'start'
  /** `enjin stop`: stops services and keeps them stopped */
  | 'stop'
  | 'destroy'
  /** the reconciler's own convergence (replacements included) */
  | 'reconcile';

/**
 * What happens to an incoming change (column) while a tree of the project runs (row), when both are about the same
 * services (a project-wide change is about all of them):
 *   queue  — waits behind it, first in first out
 *   beside — runs at once, next to it
 *   end    — aborts it (and drops the project's queued changes about the same services), then runs
 *   refuse — refused with `project_stopping`: the services are being stopped
 *   skip   — not started now: the reconciler tries again when the project is idle
 *
 *   running ↓ / incoming →  rollout  rolling  scale   restart  start   stop     destroy  reconcile
 *   rollout                 queue    queue    queue   queue    queue   end      end      skip
 *   rolling                 queue    queue    beside  queue    queue   end      end      skip
 *   scale                   queue    queue    queue   queue    queue   end      end      skip
 *   restart                 queue    queue    queue   queue    queue   end      end      skip
 *   start                   queue    queue    queue   queue    queue   end      end      skip
 *   reconcile               queue    queue    queue   queue    queue   end      end      skip
 *   stop                    refuse   refuse   refuse  refuse   refuse  refuse¹  end      skip
 *   destroy                 refuse   refuse   refuse  refuse   refuse  refuse   refuse   skip
 *
 * ¹ `stop --force` ends a stop that waits on an unreachable node.
 * Why a scale queues behind a rollout planned whole: that rollout's instances exist only once its start jobs run, so a
 * scale planned beside it would start them a second time. A rolling rollout plans each step from what is then, so the
 * scale's instances are simply part of what it sees.
 * Changes about different services never end or refuse each other; a stop runs beside them, anything else queues.
 */
export const CHANGE_RULES: Readonly<Record<ChangeCategory, Readonly<Record<ChangeCategory, Rule>>>> = (() => {
  const usual = { rollout: 'queue', rolling: 'queue', scale: 'queue', restart: 'queue', start: 'queue', stop: 'end', destroy: 'end', reconcile: 'skip' } as const;
  return {
    rollout: usual,
    rolling: { ...usual, scale: 'beside' },
    scale: usual,
    restart: usual,
    start: usual,
    reconcile: usual,
    stop: { rollout: 'refuse', rolling: 'refuse', scale: 'refuse', restart: 'refuse', start: 'refuse', stop: 'refuse', destroy: 'end', reconcile: 'skip' },
    destroy: { rollout: 'refuse', rolling: 'refuse', scale: 'refuse', restart: 'refuse', start: 'refuse', stop: 'refuse', destroy: 'refuse', reconcile: 'skip' },
  };
})();

export type Rule = 'queue' | 'beside' | 'end' | 'refuse' | 'skip';

/** A change as the rules see it: a tree running, or a request waiting. */
export interface ChangeTicket {
  /** the root job's id */
  id: string;
  projectId: string;
  category: ChangeCategory;
  /** the services it is about; null: the whole project */
  services: readonly string[] | null;
  /** `--force`: a stop that ends a stop */
  force?: boolean;
}

export type Admission =
  | { now: true; end: ChangeTicket[]; drop: ChangeTicket[] }
  | { now: false; queue: true; behind: ChangeTicket }
  | { now: false; queue: false; refuse: ChangeTicket }
  | { now: false; queue: false; skip: true };

export function overlaps(a: ChangeTicket, b: ChangeTicket): boolean {
  if (a.services === null || b.services === null) return true;
  return a.services.some((s) => b.services!.includes(s));
}

/** The rule for `incoming` while `running` runs, services considered. */
export function ruleFor(running: ChangeTicket, incoming: ChangeTicket): Rule {
  const rule = CHANGE_RULES[running.category][incoming.category];
  if (incoming.category === 'reconcile') return 'skip';
  if (!overlaps(running, incoming)) return incoming.category === 'stop' || incoming.category === 'destroy' ? 'beside' : 'queue';
  if (rule === 'refuse' && running.category === 'stop' && incoming.category === 'stop' && incoming.force) return 'end';
  return rule;
}

/** The trees running and the changes waiting, per project, in order. */
export class ChangeQueue {
  private readonly running = new Map<string, ChangeTicket[]>();
  private readonly waiting = new Map<string, ChangeTicket[]>();

  /**
   * Decides what becomes of `incoming` now. Nothing is recorded: the caller acts on the answer and then calls
   * `started` or `enqueue`, so a change that fails to start leaves no trace.
   */
  admit(incoming: ChangeTicket): Admission {
    const running = this.running.get(incoming.projectId) ?? [];
    const waiting = this.waiting.get(incoming.projectId) ?? [];
    if (incoming.category === 'reconcile') return running.length || waiting.length ? { now: false, queue: false, skip: true } : { now: true, end: [], drop: [] };
    const end: ChangeTicket[] = [];
    let behind: ChangeTicket | null = null;
    for (const r of running) {
      const rule = ruleFor(r, incoming);
      if (rule === 'refuse') return { now: false, queue: false, refuse: r };
      if (rule === 'end') end.push(r);
      else if (rule === 'queue') behind ??= r;
      else if (rule === 'skip') return { now: false, queue: false, skip: true };
    }
    if (incoming.category === 'stop' || incoming.category === 'destroy') {
      return { now: true, end, drop: waiting.filter((w) => overlaps(w, incoming)) };
    }
    // First in, first out: nothing overtakes a change already waiting.
    if (waiting.length) return { now: false, queue: true, behind: behind ?? running[0] ?? waiting[waiting.length - 1] };
    if (behind) return { now: false, queue: true, behind };
    return { now: true, end: [], drop: [] };
  }

  started(t: ChangeTicket): void {
    this.running.set(t.projectId, [...(this.running.get(t.projectId) ?? []), t]);
  }

  enqueue(t: ChangeTicket): void {
    this.waiting.set(t.projectId, [...(this.waiting.get(t.projectId) ?? []), t]);
  }

  /** A running tree ended, or a waiting change left the queue (started, aborted, dropped). */
  remove(id: string): ChangeTicket | null {
    for (const map of [this.running, this.waiting]) {
      for (const [projectId, list] of map) {
        const at = list.findIndex((t) => t.id === id);
        if (at < 0) continue;
        const [t] = list.splice(at, 1);
        if (!list.length) map.delete(projectId);
        return t;
      }
    }
    return null;
  }

  /** The first waiting change of the project that may start now (nothing it would queue behind is running). */
  next(projectId: string): ChangeTicket | null {
    const first = this.waiting.get(projectId)?.[0];
    if (!first) return null;
    const running = this.running.get(projectId) ?? [];
    return running.every((r) => ruleFor(r, first) === 'beside') ? first : null;
  }

  isRunning(id: string): boolean {
    return [...this.running.values()].some((l) => l.some((t) => t.id === id));
  }

  isWaiting(id: string): boolean {
    return this.position(id) !== null;
  }

  /** 1 for the next to start; null when not waiting. */
  position(id: string): number | null {
    for (const list of this.waiting.values()) {
      const at = list.findIndex((t) => t.id === id);
      if (at >= 0) return at + 1;
    }
    return null;
  }

  runningOf(projectId: string): ChangeTicket[] {
    return [...(this.running.get(projectId) ?? [])];
  }

  waitingOf(projectId: string): ChangeTicket[] {
    return [...(this.waiting.get(projectId) ?? [])];
  }

  /** The project has a tree running or a change waiting. */
  busy(projectId: string): boolean {
    return this.running.has(projectId) || this.waiting.has(projectId);
  }

  /** Every waiting change, and forgets them and the running trees (stepping down: they are the next leader's). */
  clear(): ChangeTicket[] {
    const all = [...this.waiting.values()].flat();
    this.running.clear();
    this.waiting.clear();
    return all;
  }
}
