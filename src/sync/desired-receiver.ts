// Agent side of the desired-state exchange: orders the controller's updates by incarnation and seq, asks for a full
// state at start, on a gap, on a new incarnation and after a bus reconnect, and hands full states and deltas on.
import type { Bus, Subscription } from '../bus/bus.ts';
import { subjects, type DesiredResyncRequest, type DesiredStateUpdate } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('desired-state');

export interface DesiredStateHandlers {
  /** seq 0: everything the controller wants of this node (what it omits is not a reason to stop anything) */
  full(update: DesiredStateUpdate): void;
  /** seq n+1: changed instances and ids the controller forgot */
  delta(update: DesiredStateUpdate): void;
}

export class DesiredStateReceiver {
  private cursor: { incarnation: string; seq: number } | null = null;
  private subs: Subscription[] = [];
  /** counts for tests and diagnostics */
  readonly counts = { fulls: 0, deltas: 0, duplicates: 0, resyncs: 0, malformed: 0 };

  constructor(private readonly bus: Bus, private readonly nodeId: string, private readonly handlers: DesiredStateHandlers) {}

  start(): void {
    this.subs.push(this.bus.subscribe(subjects.desired(this.nodeId), (msg) => this.receive(msg.data as DesiredStateUpdate)));
    // Whatever was published while the link was down is lost: only a full state can be trusted after it.
    this.subs.push(this.bus.onStatus((status) => { if (status === 'reconnected') this.requestResync('the bus reconnected'); }));
    this.requestResync('the agent started');
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  /** Forgets the position in the stream, so only a full state is taken next, and asks for one. */
  requestResync(why: string): void {
    this.cursor = null;
    this.counts.resyncs++;
    log.debug({ nodeId: this.nodeId, why }, 'asking the controller for the full desired state');
    const request: DesiredResyncRequest = { nodeId: this.nodeId };
    try {
      this.bus.publish(subjects.desiredResync, request);
    } catch (err) {
      // The next keepalive from the controller shows this node out of step and asks again.
      log.warn({ err, nodeId: this.nodeId, why }, 'could not ask for the desired state; the next update asks again');
    }
  }

  receive(update: DesiredStateUpdate): void {
    if (!update || typeof update.incarnation !== 'string' || !Number.isInteger(update.seq) || update.seq < 0 || !Array.isArray(update.instances) || !Array.isArray(update.removed)) {
      this.counts.malformed++;
      log.warn({ nodeId: this.nodeId }, 'dropped a malformed desired-state update');
      return;
    }
    const cursor = this.cursor;
    if (update.seq === 0) {
      // A full state is the truth as of when it was sent. A stale one arriving late is harmless: the agent never
      // stops for omission, never restarts what it was told to stop, and the next delta shows the gap.
      this.cursor = { incarnation: update.incarnation, seq: 0 };
      this.counts.fulls++;
      this.handlers.full(update);
      return;
    }
    if (cursor && cursor.incarnation === update.incarnation && update.seq <= cursor.seq) {
      this.counts.duplicates++;
      return;
    }
    if (!cursor || cursor.incarnation !== update.incarnation || update.seq !== cursor.seq + 1) {
      this.requestResync(!cursor ? 'waiting for a full state' : cursor.incarnation !== update.incarnation ? 'a new controller incarnation' : `a gap (seq ${update.seq} after ${cursor.seq})`);
      return;
    }
    cursor.seq = update.seq;
    this.counts.deltas++;
    this.handlers.delta(update);
  }
}
