// The router's pull side of the route table: asks the controller for it with backoff until someone answers, then again
// every 15 s, beside the tables the controller pushes. Routing never waits for it.
import type { Bus } from '../bus/bus.ts';
import { subjects, type RouteTableUpdate } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('router');

/** Each attempt waits this long, then backs off up to the maximum. */
const FETCH_TIMEOUT_MS = 2_000;
const FETCH_BACKOFF_FIRST_MS = 250;
const FETCH_BACKOFF_MAX_MS = 10_000;
/**
 * Once answered, the router asks again at this interval: it catches up on a table whose publish it missed (a bus
 * outage), and a restarted controller learns which routers exist (it waits for them to drain before stopping instances).
 */
const REFRESH_INTERVAL_MS = 15_000;

export class RouteTableFetch {
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  /** the last attempt failed (said once per outage, not at every retry) */
  private failing = false;

  constructor(private readonly bus: Bus, private readonly routerId: string, private readonly offer: (update: RouteTableUpdate) => void) {}

  start(): void {
    this.stopped = false;
    this.schedule(FETCH_BACKOFF_FIRST_MS, 0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delayMs: number, waitMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.attempt(delayMs), waitMs);
    this.timer.unref();
  }

  private async attempt(delayMs: number): Promise<void> {
    this.timer = null;
    try {
      const update = await this.bus.request<RouteTableUpdate>(subjects.routesRequest, { routerId: this.routerId }, { timeoutMs: FETCH_TIMEOUT_MS });
      if (this.stopped) return;
      this.offer(update);
      if (this.failing) log.info({ routerId: this.routerId }, 'the controller answers again: route table fetched');
      this.failing = false;
      this.schedule(FETCH_BACKOFF_FIRST_MS, REFRESH_INTERVAL_MS);
    } catch (err) {
      if (this.stopped) return;
      // Normal while the controller or the bus is away: the router routes on with the table it holds.
      if (!this.failing) log.warn({ err, routerId: this.routerId }, 'cannot fetch the route table; routing on with the one held, and retrying');
      this.failing = true;
      this.schedule(Math.min(delayMs * 2, FETCH_BACKOFF_MAX_MS), delayMs);
    }
  }
}
