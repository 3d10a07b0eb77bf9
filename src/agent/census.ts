// Answers a recovery census: a controller on an empty store asks every node who is there, and each agent answers the
// way it answers a resync (a full node state, seq 0), at once rather than at its next heartbeat.
import type { Bus, Subscription } from '../bus/bus.ts';
import { subjects, type RecoveryCensus } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('agent');

/** A census is answered at most this often: every agent hears every census, from every recovering controller. */
export const CENSUS_MIN_INTERVAL_MS = 1000;

export class CensusResponder {
  private sub: Subscription | null = null;
  private answeredAt = 0;
  /** the answer held back to keep to one a second */
  private timer: NodeJS.Timeout | null = null;
  /** who asked since the last answer, for the log */
  private askedBy = new Set<string>();

  /** publishFull: what a resync request does (publish the node's full state, seq 0) */
  constructor(private readonly bus: Bus, private readonly nodeId: string, private readonly publishFull: () => void, private readonly minIntervalMs = CENSUS_MIN_INTERVAL_MS) {}

  start(): void {
    this.sub ??= this.bus.subscribe(subjects.census, (m) => this.asked(m.data as RecoveryCensus));
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Censuses within one interval get one answer, at its end: none goes unheard, and a burst costs one publish. */
  private asked(census: RecoveryCensus): void {
    this.askedBy.add(typeof census?.controllerId === 'string' ? census.controllerId.slice(0, 200) : '(unnamed)');
    if (this.timer) return;
    const wait = this.answeredAt + this.minIntervalMs - Date.now();
    if (wait <= 0) this.answer();
    else this.timer = setTimeout(() => this.answer(), wait);
  }

  private answer(): void {
    this.timer = null;
    this.answeredAt = Date.now();
    log.info({ nodeId: this.nodeId, controllers: [...this.askedBy] }, 'a controller recovering from the nodes asked who is there; publishing the full node state');
    this.askedBy.clear();
    this.publishFull();
  }
}
