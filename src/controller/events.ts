// Events: one-off happenings beside state (an instance exited or failed, a node went down or came back) for
// `enjin events`. The leader writes them to the store (followers see the same notifications and would write them
// twice) and prunes those older than the retention; every controller lists them from the store.
import type { Notification } from '../core/messages.ts';
import type { Store } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('controller');

export const DEFAULT_EVENT_RETENTION_MS = 7 * 24 * 3600_000;
const PRUNE_EVERY_MS = 3600_000;

export interface EventLogOptions {
  store: Pick<Store, 'appendEvents' | 'deleteEventsBefore'>;
  /** true while this controller leads: only the leader writes */
  leading(): boolean;
  retentionMs?: number;
  now(): number;
}

export class EventLog {
  private timer: NodeJS.Timeout | null = null;
  readonly retentionMs: number;

  constructor(private readonly o: EventLogOptions) {
    this.retentionMs = o.retentionMs ?? DEFAULT_EVENT_RETENTION_MS;
  }

  record(n: Notification): void {
    if (!this.o.leading()) return;
    // Written behind: while the store is away the writes wait in order with the rest.
    this.o.store.appendEvents([n]).catch((err: unknown) => log.warn({ err, kind: n.kind }, 'could not keep an event in the store; it was logged here only'));
  }

  /** A leader duty: prune now and every hour. */
  startPruning(): void {
    this.prune();
    this.timer ??= setInterval(() => this.prune(), PRUNE_EVERY_MS);
    this.timer.unref();
  }

  stopPruning(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private prune(): void {
    const before = new Date(this.o.now() - this.retentionMs).toISOString();
    this.o.store.deleteEventsBefore(before)
      .then((n) => { if (n) log.info({ removed: n, before }, 'forgot events past their retention'); })
      .catch((err: unknown) => log.warn({ err }, 'pruning old events failed; the next hour tries again'));
  }
}
