// A Bus wrapper for tests of the state exchanges: drops, duplicates and reorders publishes at seeded random, so a
// failing run can be replayed with its seed. Requests and replies pass through untouched.
import type { Bus, BusMessage, BusStatus, RequestMeta, SubscribeOptions, Subscription } from './bus.ts';

export interface LossyOptions {
  /** the same seed gives the same choices for the same sequence of publishes */
  seed: number;
  /** probability that a publish is lost */
  drop?: number;
  /** probability that a publish is delivered twice */
  duplicate?: number;
  /** probability that a copy is held back and delivered after later publishes */
  reorder?: number;
  /** the longest a reordered copy is held, ms (default 50) */
  maxDelayMs?: number;
  /** which subjects suffer (default: all) */
  affects?: (subject: string) => boolean;
}

/** mulberry32: small, fast, and good enough to scatter faults. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class LossyBus implements Bus {
  private readonly random: () => number;
  private readonly o: LossyOptions;
  /** faults are off while false (to show what a healed network converges to) */
  lossy = true;
  readonly counts = { published: 0, dropped: 0, duplicated: 0, reordered: 0 };
  private readonly held = new Set<NodeJS.Timeout>();
  private readonly statusListeners = new Set<(status: BusStatus) => void>();

  constructor(private readonly inner: Bus, o: LossyOptions) {
    this.o = o;
    this.random = seeded(o.seed);
  }

  publish(subject: string, data: unknown): void {
    this.counts.published++;
    if (!this.lossy || (this.o.affects && !this.o.affects(subject))) return this.inner.publish(subject, data);
    if (this.random() < (this.o.drop ?? 0)) {
      this.counts.dropped++;
      return;
    }
    const copies = this.random() < (this.o.duplicate ?? 0) ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    // The wire copy is taken now: a publisher changing its object later must not change what is delivered late.
    const wire = JSON.stringify(data ?? null);
    for (let k = 0; k < copies; k++) {
      if (this.random() < (this.o.reorder ?? 0)) {
        this.counts.reordered++;
        const timer = setTimeout(() => {
          this.held.delete(timer);
          this.inner.publish(subject, JSON.parse(wire));
        }, 1 + Math.floor(this.random() * (this.o.maxDelayMs ?? 50)));
        this.held.add(timer);
      } else {
        this.inner.publish(subject, JSON.parse(wire));
      }
    }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts?: SubscribeOptions): Subscription {
    return this.inner.subscribe(subject, handler, opts);
  }

  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts?: SubscribeOptions): Subscription {
    return this.inner.handle(subject, responder, opts);
  }

  request<T = unknown>(subject: string, data: unknown, opts?: { timeoutMs?: number }): Promise<T> {
    return this.inner.request<T>(subject, data, opts);
  }

  onStatus(listener: (status: BusStatus) => void): Subscription {
    this.statusListeners.add(listener);
    const inner = this.inner.onStatus(listener);
    return { unsubscribe: () => { this.statusListeners.delete(listener); inner.unsubscribe(); } };
  }

  /** Tells this wrapper's listeners of a connection event, as a networked backend would after an outage. */
  emitStatus(status: BusStatus): void {
    for (const l of [...this.statusListeners]) l(status);
  }

  async close(): Promise<void> {
    for (const t of this.held) clearTimeout(t);
    this.held.clear();
    await this.inner.close();
  }
}
