// A router-only node's presence in the node state exchange: no instances, only the node's info and a keepalive every
// 15 s (seq 0 first, on every resync request and on a recovery census), so the controller shows it ready, and down once it goes silent,
// exactly as it does for agents.
import { randomUUID } from 'node:crypto';
import type { Bus, Subscription } from '../../bus/bus.ts';
import { subjects, type NodeInfo, type NodeStateUpdate } from '../../core/messages.ts';

export class RouterPresence {
  readonly #bus: Bus;
  readonly #node: NodeInfo;
  readonly #heartbeatMs: number;
  readonly #incarnation = randomUUID();
  #seq = -1;
  #subs: Subscription[] = [];
  #lastCensusAnswer = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(bus: Bus, node: NodeInfo, heartbeatMs = 15_000) {
    this.#bus = bus;
    this.#node = node;
    this.#heartbeatMs = heartbeatMs;
  }

  start(): void {
    this.#subs.push(this.#bus.subscribe(subjects.resync(this.#node.nodeId), () => this.#publish(true)));
    // A controller rebuilding its store from the nodes asks who is there: answered at once, at most once a second.
    this.#subs.push(this.#bus.subscribe(subjects.census, () => {
      if (Date.now() - this.#lastCensusAnswer < 1000) return;
      this.#lastCensusAnswer = Date.now();
      this.#publish(true);
    }));
    this.#publish(true);
    this.#timer = setInterval(() => this.#publish(false), this.#heartbeatMs);
  }

  stop(): void {
    for (const sub of this.#subs.splice(0)) sub.unsubscribe();
    if (this.#timer) clearInterval(this.#timer);
  }

  #publish(full: boolean): void {
    this.#seq = full ? 0 : this.#seq + 1;
    const update: NodeStateUpdate = { node: this.#node, incarnation: this.#incarnation, seq: this.#seq, instances: [], removed: [] };
    this.#bus.publish(subjects.nodeState(this.#node.nodeId), update);
  }
}
