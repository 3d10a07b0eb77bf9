// The agent's side of the node-state exchange (see sync/node-state.ts for the controller's): what changed is batched
// per turn and published as one update; seq 0 sends everything this node has, and an empty update every heartbeat
// lets the controller notice a silent node (it takes a seq, so a lost update shows as a gap).
import { randomUUID } from 'node:crypto';
import type { Bus } from '../bus/bus.ts';
import { subjects, type InstanceReport, type NodeInfo, type NodeStateUpdate } from '../core/messages.ts';

export interface StateReportsOptions {
  bus: Bus;
  nodeId: string;
  /** the node's info, sent with every update (disk and volumes are updated in place) */
  node: NodeInfo;
  /** every instance this node runs, and one of them (null once it is gone) */
  reports(): InstanceReport[];
  report(id: string): InstanceReport | null;
}

export class NodeStateReports {
  private incarnation = '';
  private seq = 0;
  /** off until the first full update of this incarnation, and after stop */
  private publishing = false;
  private readonly changed = new Set<string>();
  private readonly removed = new Set<string>();
  private flushScheduled = false;

  constructor(private readonly o: StateReportsOptions) {}

  /** A new incarnation: the controller takes the next full update as replacing all it knew of this node. */
  begin(): void {
    this.incarnation = randomUUID();
    this.seq = 0;
    this.publishing = false;
  }

  /** Sends what is pending, then nothing more. */
  stop(): void {
    this.flush();
    this.publishing = false;
  }

  instanceChanged(id: string): void {
    this.removed.delete(id);
    this.changed.add(id);
    this.scheduleFlush();
  }

  instanceRemoved(id: string): void {
    this.changed.delete(id);
    this.removed.add(id);
    this.scheduleFlush();
  }

  /** seq 0: everything this node has, replacing what the controller knew. */
  full(): void {
    this.changed.clear();
    this.removed.clear();
    this.publishing = true;
    this.seq = -1;
    this.publish(this.o.reports(), []);
  }

  /** Pending changes, then an empty update: the heartbeat. */
  beat(): void {
    this.flush();
    this.publish([], []);
  }

  /** The node's info changed (a volume made or removed): the controller hears it at once. */
  infoChanged(): void {
    if (this.publishing) this.publish([], []);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.publishing) return;
    this.flushScheduled = true;
    // Changes made in one turn (a stop and its removal, a batch of recoveries) travel as one update.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (!this.publishing || (!this.changed.size && !this.removed.size)) return;
    const instances = [...this.changed].map((id) => this.o.report(id)).filter((r): r is InstanceReport => r !== null);
    const removed = [...this.removed];
    this.changed.clear();
    this.removed.clear();
    this.publish(instances, removed);
  }

  private publish(instances: InstanceReport[], removed: string[]): void {
    this.seq++;
    const update: NodeStateUpdate = { node: this.o.node, incarnation: this.incarnation, seq: this.seq, instances, removed };
    this.o.bus.publish(subjects.nodeState(this.o.nodeId), update);
  }
}
