// Controller side of the desired-state exchange: tells each node which instances it should run, as a full state on
// request and as coalesced deltas after, with a keepalive so a lost update shows as a gap. Only the leader runs it.
import { randomUUID } from 'node:crypto';
import type { Bus, Subscription } from '../bus/bus.ts';
import { subjects, type DesiredInstance, type DesiredResyncRequest, type DesiredStateUpdate } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('desired-state');

export interface DesiredStatePublisherOptions {
  /** every instance placed on the node (desired running or stopped), with its spec and version */
  desiredFor: (nodeId: string) => DesiredInstance[];
  /** the nodes to send keepalives (and a first full state) to; nodes that ask for a resync are added to them */
  nodeIds: () => Iterable<string>;
  /** default 15000 */
  keepaliveMs?: number;
  /**
   * Drops a resync request whose sender is not the node it asks for (signed buses). Default: accept. A full state is
   * only what the controller would send anyway, so a forged request costs a message, never a wrong state.
   */
  checkSender?: (nodeId: string, sender: string | null) => boolean;
  /**
   * Nothing is sent to a node while this says so: a controller recovering from the nodes must read what a node keeps
   * before telling it anything (a full state would replace the node's copy). Call changed(nodeId) once released.
   */
  hold?: (nodeId: string) => boolean;
}

interface NodeStream {
  seq: number;
  /** what the node was last told, instance id → JSON of its DesiredInstance: the base of the next delta */
  sent: Map<string, string>;
}

export class DesiredStatePublisher {
  private readonly o: DesiredStatePublisherOptions;
  /** random per run (each start(): a controller regaining leadership is a new run to agents) */
  private run = randomUUID();
  private readonly streams = new Map<string, NodeStream>();
  private readonly dirty = new Set<string>();
  private everything = false;
  private scheduled = false;
  private running = false;
  private sub: Subscription | null = null;
  private keepalive: NodeJS.Timeout | null = null;

  constructor(private readonly bus: Bus, o: DesiredStatePublisherOptions) {
    this.o = o;
  }

  get incarnation(): string {
    return this.run;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.run = randomUUID();
    this.sub = this.bus.subscribe(subjects.desiredResync, (msg) => {
      const nodeId = (msg.data as DesiredResyncRequest | null)?.nodeId;
      if (typeof nodeId !== 'string' || !nodeId) return;
      if (this.o.checkSender && !this.o.checkSender(nodeId, msg.sender)) {
        log.warn({ nodeId, sender: msg.sender }, 'dropped a desired-state resync request sent on behalf of another node');
        return;
      }
      this.sendFull(nodeId);
    });
    // Every node hears this run's incarnation at once, with a full state it can trust.
    for (const nodeId of this.o.nodeIds()) this.sendFull(nodeId);
    this.keepalive = setInterval(() => this.sendKeepalives(), this.o.keepaliveMs ?? 15_000);
    this.keepalive.unref();
  }

  /** Stops publishing (leadership lost, controller stopping); a later start() begins a fresh exchange. */
  stop(): void {
    this.running = false;
    this.sub?.unsubscribe();
    this.sub = null;
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
    this.streams.clear();
    this.dirty.clear();
  }

  /** Something about the node's instances changed: a delta goes out once the current turn is over. */
  changed(nodeId?: string): void {
    if (!this.running) return;
    if (nodeId === undefined) this.everything = true;
    else this.dirty.add(nodeId);
    if (this.scheduled) return;
    this.scheduled = true;
    // A burst of changes (a job saving several instances, a node's full report) travels as one delta per node.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** Sends the deltas of every changed node now. */
  flush(): void {
    if (!this.running) return;
    const nodes = this.everything ? [...this.streams.keys()] : [...this.dirty];
    this.everything = false;
    this.dirty.clear();
    for (const nodeId of nodes) {
      const stream = this.streams.get(nodeId);
      // A node never told anything gets a full state instead: a delta would mean nothing to it.
      if (!stream) this.sendFull(nodeId);
      else this.sendDelta(nodeId, stream, false);
    }
  }

  private sendFull(nodeId: string): void {
    if (!this.running || this.o.hold?.(nodeId)) return;
    const instances = this.o.desiredFor(nodeId);
    const sent = new Map(instances.map((d) => [d.spec.instanceId, JSON.stringify(d)]));
    this.streams.set(nodeId, { seq: 0, sent });
    this.dirty.delete(nodeId);
    this.publish(nodeId, { incarnation: this.incarnation, seq: 0, instances, removed: [] });
  }

  /** What changed since the node was last told; with `always`, an empty update too (the keepalive). */
  private sendDelta(nodeId: string, stream: NodeStream, always: boolean): void {
    if (this.o.hold?.(nodeId)) return;
    const now = this.o.desiredFor(nodeId);
    const seen = new Set<string>();
    const instances: DesiredInstance[] = [];
    for (const d of now) {
      const id = d.spec.instanceId;
      seen.add(id);
      const json = JSON.stringify(d);
      if (stream.sent.get(id) === json) continue;
      stream.sent.set(id, json);
      instances.push(d);
    }
    const removed = [...stream.sent.keys()].filter((id) => !seen.has(id));
    for (const id of removed) stream.sent.delete(id);
    if (!always && !instances.length && !removed.length) return;
    stream.seq++;
    this.publish(nodeId, { incarnation: this.incarnation, seq: stream.seq, instances, removed });
  }

  private sendKeepalives(): void {
    if (!this.running) return;
    for (const nodeId of this.o.nodeIds()) if (!this.streams.has(nodeId)) this.sendFull(nodeId);
    // Carries any pending change too, so a keepalive never overtakes a delta it should follow.
    for (const [nodeId, stream] of this.streams) this.sendDelta(nodeId, stream, true);
    this.dirty.clear();
  }

  private publish(nodeId: string, update: DesiredStateUpdate): void {
    try {
      this.bus.publish(subjects.desired(nodeId), update);
    } catch (err) {
      // The bus is away: the node asks for a full state when it is back, so nothing is lost for good.
      log.warn({ err, nodeId, seq: update.seq }, 'could not publish desired state; the node resyncs when the bus is back');
    }
  }
}
