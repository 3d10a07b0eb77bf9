// A follower's memory kept fresh from the store: reloaded every couple of seconds and whenever the leader announces a
// desired-state write, merged so what nodes reported here directly (newer than the leader's rows) is kept.
import type { EventEmitter } from 'node:events';
import type { Bus, Subscription } from '../bus/bus.ts';
import type { Instance, Job, Node } from '../core/model.ts';
import type { Store, StoreSnapshot } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('follower');

/** the leader publishes here after each desired-state write; followers reload */
export const DESIRED_CHANGED_SUBJECT = 'enjin.controller.desired-changed';
const RELOAD_MS = 2_000;
/** the newest jobs a follower re-reads at each reload, beside every unfinished one */
const RECENT_JOBS = 100;

/** Replaces the desired parts of memory with the snapshot's; current parts are kept where memory's are newer. */
export function applySnapshot(state: ControllerState, snapshot: StoreSnapshot): void {
  replaceMap(state.workspaces, snapshot.workspaces);
  replaceMap(state.projects, snapshot.projects);
  replaceMap(state.versions, snapshot.versions);

  const nodes = new Map<string, Node>();
  for (const n of snapshot.nodes) {
    const mine = state.nodes.get(n.id);
    // The leader decides a node's status (down, draining); a report seen here may be newer than its row.
    nodes.set(n.id, mine && (mine.lastSeenAt ?? '') > (n.lastSeenAt ?? '') ? { ...n, lastSeenAt: mine.lastSeenAt, disk: mine.disk ?? n.disk } : n);
  }
  replaceMap(state.nodes, [...nodes.values()]);

  const seen = new Set<string>();
  for (const i of snapshot.instances) {
    seen.add(i.id);
    const mine = state.instances.get(i.id);
    const keepMine = mine?.current && (!i.current || mine.current.reportedAt > i.current.reportedAt);
    state.putInstance(keepMine ? ({ ...i, current: mine.current } satisfies Instance) : i);
  }
  for (const id of [...state.instances.keys()]) if (!seen.has(id)) state.removeInstance(id);
}

function replaceMap<T extends { id: string }>(map: Map<string, T>, rows: T[]): void {
  const ids = new Set(rows.map((r) => r.id));
  for (const id of [...map.keys()]) if (!ids.has(id)) map.delete(id);
  for (const r of rows) map.set(r.id, r);
}

export class FollowerSync {
  #timer: NodeJS.Timeout | null = null;
  #sub: Subscription | null = null;
  #loading: Promise<void> | null = null;
  #again = false;
  #failing = false;
  /** job id → the JSON last announced, so only changes are announced */
  #announced = new Map<string, string>();

  /**
   * `jobEvents`: where job changes are announced ('change', as the job engine emits them), so the follower's job
   * listing and live views follow the leader's trees.
   */
  constructor(private readonly store: Store, private readonly bus: Bus, private readonly state: ControllerState, private readonly reloadMs = RELOAD_MS, private readonly jobEvents?: EventEmitter) {}

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.reload(), this.reloadMs);
    this.#timer.unref();
    this.#sub = this.bus.subscribe(DESIRED_CHANGED_SUBJECT, () => void this.reload());
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#sub?.unsubscribe();
    this.#sub = null;
  }

  #announceJobs(jobs: Job[]): void {
    const next = new Map<string, string>();
    for (const j of jobs) {
      const json = JSON.stringify(j);
      next.set(j.id, json);
      if (this.#announced.get(j.id) !== json) this.jobEvents!.emit('change', j);
    }
    this.#announced = next;
  }

  /** One load at a time; a notice during a load loads once more after it. */
  reload(): Promise<void> {
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#again = false;
        try {
          const snapshot = await this.store.load();
          // Stopped meanwhile (this controller took the lead): the leader's memory is its own now.
          if (!this.#timer) return;
          applySnapshot(this.state, snapshot);
          if (this.jobEvents) this.#announceJobs([...snapshot.unfinishedJobs, ...(await this.store.listJobs({ limit: RECENT_JOBS }))]);
          if (this.#failing) log.info('the store answers again: reloading desired state from it');
          this.#failing = false;
        } catch (err) {
          if (!this.#failing) log.warn({ err }, 'cannot reload desired state from the store; reads answer from memory until it is back');
          this.#failing = true;
        }
      } while (this.#again && this.#timer);
    })().finally(() => (this.#loading = null));
    return this.#loading;
  }
}
