// Controller side of the state exchange: orders each node's updates by incarnation and seq, and asks for a full
// resync when an update is missing or a node restarted, so the controller's copy never silently drifts.
import type { Bus, Subscription } from '../bus/bus.ts';
import { subjects, type NodeStateUpdate } from '../core/messages.ts';

interface PeerCursor {
  incarnation: string;
  seq: number;
}

export interface NodeStateHandlers {
  /** seq 0: `instances` is everything the node has */
  full(update: NodeStateUpdate): void;
  /** seq n+1: changed instances and removed ids only */
  delta(update: NodeStateUpdate): void;
}

export class NodeStateReceiver {
  private readonly cursors = new Map<string, PeerCursor>();
  private sub: Subscription | null = null;

  constructor(private readonly bus: Bus, private readonly handlers: NodeStateHandlers) {}

  start(): void {
    this.sub = this.bus.subscribe(subjects.nodeStateAll, (msg) => this.receive(msg.data as NodeStateUpdate));
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  /** Forget a peer's position, so its next update must be a full one. */
  requestResync(nodeId: string): void {
    this.cursors.delete(nodeId);
    this.bus.publish(subjects.resync(nodeId), {});
  }

  receive(update: NodeStateUpdate): void {
    const nodeId = update.node.nodeId;
    const cursor = this.cursors.get(nodeId);
    if (update.seq === 0) {
      this.cursors.set(nodeId, { incarnation: update.incarnation, seq: 0 });
      this.handlers.full(update);
      return;
    }
    if (!cursor || cursor.incarnation !== update.incarnation || update.seq !== cursor.seq + 1) {
      // A gap, a restart we did not see, or a controller that just started: only a full update can be trusted now.
      if (cursor && cursor.incarnation === update.incarnation && update.seq <= cursor.seq) return; // a duplicate
      this.requestResync(nodeId);
      return;
    }
    cursor.seq = update.seq;
    this.handlers.delta(update);
  }
}
