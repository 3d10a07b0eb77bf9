// Leadership role changes: what a controller starts when it takes over and stops when it steps down, one change at a time.
import type { ControllerRef } from './leadership.ts';
import type { ControllerState } from './state.ts';
import type { JobEngine } from './jobs/engine.ts';
import type { RoutePublisher } from './routes/publisher.ts';
import type { NodeLifecycle } from './nodes.ts';
import { applySnapshot, type FollowerSync } from './follower-sync.ts';
import type { WriteBehindStore } from '../store/write-behind.ts';
import { newId } from '../core/ids.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('controller');

/** Started when this controller becomes the leader, stopped when it steps down (or stops). */
export interface LeaderDuty {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/** What a role change touches in the controller. */
export interface LeaderTurnsHost {
  readonly state: ControllerState;
  readonly store: WriteBehindStore;
  readonly jobs: JobEngine;
  readonly routes: RoutePublisher;
  readonly nodeLifecycle: NodeLifecycle;
  readonly followerSync: FollowerSync;
  /** how often the reconcile loop runs while leading, ms */
  readonly reconcileIntervalMs: number;
  /** this controller's id among the controllers on the store */
  id(): string;
  /** asks a node for its full state, so it speaks at once rather than at its next keepalive */
  requestResync(nodeId: string): void;
  /** one turn of the reconcile loop */
  tick(): Promise<void>;
  /** the trees this controller ran are no longer its own: the applier forgets them */
  forgetTrees(): void;
}

export class LeaderTurns {
  /** what only the leader runs, beside the reconcile loop, job recovery and route publishing (e.g. desired-state publishing) */
  private readonly duties: LeaderDuty[] = [];
  private running = false;
  private loop: NodeJS.Timeout | null = null;
  private roleChange: Promise<void> = Promise.resolve();

  constructor(private readonly h: LeaderTurnsHost) {}

  /** True once this controller leads and has finished taking over, until it steps down. */
  get dutiesRunning(): boolean {
    return this.running;
  }

  /** Registers something only the leader runs: started now if this controller leads, and on every takeover. */
  async whileLeading(duty: LeaderDuty): Promise<void> {
    this.duties.push(duty);
    if (this.running) await duty.start();
  }

  /**
   * Takes over: the store's state replaces memory (nodes' reports seen here are kept), the trees the previous leader
   * left running end failed with a reason naming it, and the reconcile loop, route and desired-state publishing start.
   */
  async lead(previous: ControllerRef | null): Promise<void> {
    const h = this.h;
    h.followerSync.stop();
    h.store.setFollower(false);
    const snapshot = await h.store.load();
    applySnapshot(h.state, snapshot);
    // Nodes keep the status they had: one that was ready gets a full nodeDownAfterMs from now to speak (see
    // NodeLifecycle), so a takeover never moves instances off healthy nodes nor empties routes. Asking each for a
    // full state makes them speak at once rather than at their next keepalive.
    h.nodeLifecycle.watchFromNow();
    for (const n of h.state.nodes.values()) h.requestResync(n.id);
    if (!h.state.workspaceByName('default')) {
      const ws = { id: newId('ws'), name: 'default', createdAt: new Date().toISOString() };
      await h.store.insertWorkspace(ws);
      h.state.workspaces.set(ws.id, ws);
    }
    const self = h.id();
    const reason = previous && previous.id !== self
      ? `the leader controller ${previous.id} stopped while this ran; ${self} took over`
      : undefined;
    await h.jobs.recover(snapshot.unfinishedJobs, reason);
    this.running = true;
    h.routes.start();
    for (const d of this.duties) await d.start();
    this.loop = setInterval(() => void h.tick(), h.reconcileIntervalMs);
    this.loop.unref();
  }

  /** Steps down (or starts as a follower): stops everything only the leader runs, then keeps memory fresh from the store. */
  async follow(reason: string): Promise<void> {
    const h = this.h;
    log.info({ id: h.id(), reason }, 'this controller follows');
    // A follower writes nothing: the leader owns every row, and fails the trees this one was running.
    h.store.setFollower(true);
    await this.stopDuties();
    await h.jobs.stop();
    h.forgetTrees();
    h.followerSync.start();
    await h.followerSync.reload();
  }

  /** Role changes happen one at a time: a takeover never interleaves with stepping down (or starting as a follower). */
  inTurn(fn: () => Promise<void>): Promise<void> {
    const run = this.roleChange.then(fn, fn);
    this.roleChange = run.then(() => undefined, () => undefined);
    return run;
  }

  async stopDuties(): Promise<void> {
    if (this.loop) clearInterval(this.loop);
    this.loop = null;
    if (!this.running) return;
    this.running = false;
    this.h.routes.stop();
    for (const d of this.duties) {
      try {
        await d.stop();
      } catch (err) {
        log.error({ err }, 'stopping a leader duty failed');
      }
    }
  }
}
