// A node as the controller sees it, without an agent: it reports its state on the bus and takes every request
// without ever answering (so a job tree that needs it keeps running until someone ends it).
import type { Bus, Subscription } from '../../src/bus/bus.ts';
import { newId } from '../../src/core/ids.ts';
import { subjects, type InstanceReport, type NodeStateUpdate } from '../../src/core/messages.ts';

export class SimulatedNode {
  readonly incarnation = newId('inc');
  private seq = 0;
  private readonly sub: Subscription;
  /** requests received, newest last: what the controller asked of this node */
  readonly requests: unknown[] = [];
  /** requests held unanswered, failed by stop() so no requester's timer outlives the test */
  private readonly held: Array<(err: Error) => void> = [];

  constructor(private readonly bus: Bus, readonly nodeId: string) {
    this.sub = bus.handle(subjects.agentRpc(nodeId), (data) => {
      this.requests.push(data);
      return new Promise((_, reject) => this.held.push(reject));
    });
  }

  private info() {
    return { nodeId: this.nodeId, name: this.nodeId, address: '127.0.0.1', labels: {} };
  }

  /** seq 0: everything it runs */
  full(instances: InstanceReport[]): void {
    this.seq = 0;
    this.bus.publish(subjects.nodeState(this.nodeId), { node: this.info(), incarnation: this.incarnation, seq: 0, instances, removed: [] } satisfies NodeStateUpdate);
  }

  delta(instances: InstanceReport[], removed: string[] = []): void {
    this.bus.publish(subjects.nodeState(this.nodeId), { node: this.info(), incarnation: this.incarnation, seq: ++this.seq, instances, removed } satisfies NodeStateUpdate);
  }

  stop(): void {
    this.sub.unsubscribe();
    for (const reject of this.held.splice(0)) reject(new Error(`simulated node ${this.nodeId} stopped`));
  }
}
