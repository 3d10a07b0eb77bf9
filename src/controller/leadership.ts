// Leader election among controllers on one PostgreSQL: whoever holds the advisory lock leads; the others try every
// second. Every controller heartbeats its row in `controllers`, so any of them can name the leader.
import type { ControllerRecord, LeaderLock, Store } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('leadership');

const TICK_MS = 1_000;
const HEARTBEAT_MS = 2_000;
/** a row not refreshed for this long belongs to a controller that is gone (or cut off) */
const STALE_AFTER_MS = 10_000;
/** a row not refreshed for this long is not listed at all */
const FORGET_AFTER_MS = 3_600_000;

export interface ControllerRef {
  id: string;
  apiUrl: string;
}

export interface LeadershipOptions {
  id: string;
  /** where this controller's API answers (read at each heartbeat: it is known only once the API listens) */
  apiUrl: () => string;
  /** the store the `controllers` rows live in */
  store: Store;
  /** null: the embedded store, one process only, which always leads */
  lock: LeaderLock | null;
  /** runs when this controller takes the lock; `previous`: the controller that led before, if known. A throw gives the lock back. */
  onBecomeLeader: (previous: ControllerRef | null) => Promise<void>;
  /** runs when the lock turned out to be someone else's */
  onStepDown: (reason: string) => Promise<void>;
  tickMs?: number;
  heartbeatMs?: number;
  now?: () => number;
}

export class Leadership {
  readonly id: string;
  readonly startedAt = new Date().toISOString();
  #leading = false;
  #leaderSince: string | null = null;
  #controllers: ControllerRecord[] = [];
  #timer: NodeJS.Timeout | null = null;
  #beat: NodeJS.Timeout | null = null;
  /** one tick at a time: a slow check must not overlap the next */
  #ticking: Promise<void> | null = null;
  #beating: Promise<void> | null = null;
  #stopped = false;
  #outageLogged = false;
  readonly #o: LeadershipOptions;
  readonly #now: () => number;

  constructor(opts: LeadershipOptions) {
    this.#o = opts;
    this.id = opts.id;
    this.#now = opts.now ?? Date.now;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** true: the embedded store, where this controller is the only one */
  get alone(): boolean {
    return this.#o.lock === null;
  }

  /** the leader as far as this controller knows: itself, or the freshest row that says it leads */
  leader(): ControllerRef | null {
    if (this.#leading) return { id: this.id, apiUrl: this.#o.apiUrl() };
    const now = this.#now();
    const leaders = this.#controllers
      .filter((c) => c.id !== this.id && c.leaderSince && now - Date.parse(c.lastSeenAt) < STALE_AFTER_MS)
      .sort((a, b) => (a.leaderSince! < b.leaderSince! ? 1 : -1));
    return leaders[0] ? { id: leaders[0].id, apiUrl: leaders[0].apiUrl } : null;
  }

  /** every controller row seen at the last heartbeat, this one's as it is now */
  controllers(): Array<ControllerRecord & { leader: boolean; stale: boolean }> {
    const leader = this.leader();
    const now = this.#now();
    const self = this.#row();
    // Controllers gone for long (earlier runs of a restarted one) are left out; recently gone ones are shown as stale.
    const rows = [self, ...this.#controllers.filter((c) => c.id !== this.id && now - Date.parse(c.lastSeenAt) < FORGET_AFTER_MS)];
    return rows.map((c) => ({ ...c, leader: c.id === leader?.id, stale: c.id !== this.id && now - Date.parse(c.lastSeenAt) >= STALE_AFTER_MS }));
  }

  /** Tries for the lock once (leading at once if free), then keeps trying and checking every tick. */
  async start(): Promise<void> {
    await this.heartbeat();
    await this.tick();
    this.#timer = setInterval(() => void this.tick(), this.#o.tickMs ?? TICK_MS);
    this.#timer.unref();
    this.#beat = setInterval(() => void this.heartbeat(), this.#o.heartbeatMs ?? HEARTBEAT_MS);
    this.#beat.unref();
  }

  /** Gives up the lock (another controller takes it within a tick) and marks this row as not leading. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#beat) clearInterval(this.#beat);
    await this.#ticking;
    const wasLeading = this.#leading;
    this.#leading = false;
    this.#leaderSince = null;
    await this.#o.lock?.release();
    if (wasLeading && this.#o.lock) await this.#beatNow();
  }

  tick(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#ticking ??= this.#tick().finally(() => (this.#ticking = null));
    return this.#ticking;
  }

  async #tick(): Promise<void> {
    const lock = this.#o.lock;
    if (!lock) {
      if (!this.#leading) await this.#become();
      return;
    }
    if (!this.#leading) {
      let got = false;
      try {
        got = await lock.tryAcquire();
      } catch (err) {
        log.debug({ err }, 'cannot reach PostgreSQL to try for the leader lock');
        return;
      }
      if (got) await this.#become();
      return;
    }
    if (await lock.check().catch(() => false)) {
      this.#outageLogged = false;
      return;
    }
    // The session that held the lock is gone. Nobody else can take the lock while PostgreSQL is away, so keep
    // leading until it answers; then take the lock again, or step down if another controller got it first.
    let again: boolean;
    try {
      again = await lock.tryAcquire();
    } catch (err) {
      if (!this.#outageLogged) log.warn({ err }, 'PostgreSQL is unreachable: this controller keeps leading (nobody can take the lock) and takes it again when PostgreSQL answers');
      this.#outageLogged = true;
      return;
    }
    this.#outageLogged = false;
    if (again) {
      log.info('PostgreSQL answers again: the leader lock is this controller\'s again');
      return;
    }
    this.#leading = false;
    this.#leaderSince = null;
    await lock.release();
    log.warn('another controller holds the leader lock now: stepping down');
    await this.#o.onStepDown('another controller took the leader lock while this one could not reach PostgreSQL').catch((err: unknown) => log.error({ err }, 'stepping down failed'));
    void this.#beatNow();
  }

  async #become(): Promise<void> {
    // Whoever led before, named in the reason given to the trees it left running.
    await this.#refreshRows();
    const previous = this.#controllers.filter((c) => c.id !== this.id && c.leaderSince).sort((a, b) => (a.leaderSince! < b.leaderSince! ? 1 : -1))[0];
    // Alone on the embedded store, leading is a given and not news.
    (this.alone ? log.debug.bind(log) : log.info.bind(log))({ id: this.id, previous: previous?.id }, 'this controller takes the lead');
    try {
      // Not `leading` until the takeover is done: writes are refused until memory is the store's and recovered.
      await this.#o.onBecomeLeader(previous ? { id: previous.id, apiUrl: previous.apiUrl } : null);
      this.#leading = true;
      this.#leaderSince = new Date(this.#now()).toISOString();
    } catch (err) {
      log.error({ err }, 'could not take over as leader; giving the lock back and trying again');
      this.#leading = false;
      this.#leaderSince = null;
      await this.#o.lock?.release();
      await this.#o.onStepDown(`taking over failed: ${(err as Error).message}`).catch((e: unknown) => log.error({ err: e }, 'stepping down failed'));
      return;
    }
    await this.#beatNow();
    // The leader forgets controllers gone for long (every restart of a controller adds a row).
    await this.#o.store.deleteControllersSeenBefore(new Date(this.#now() - FORGET_AFTER_MS).toISOString()).catch((err: unknown) => log.debug({ err }, 'could not forget old controller rows; the next leader tries again'));
  }

  /** A beat that carries the row as it is now (one already on its way may carry an older one). */
  async #beatNow(): Promise<void> {
    await this.#beating;
    await this.heartbeat();
  }

  /** Writes this controller's row and reads everyone's; an unreachable store only delays it. */
  heartbeat(): Promise<void> {
    // One at a time: with the store slow to refuse (a cut link), beats must not pile up behind each other.
    this.#beating ??= (async () => {
      try {
        await this.#o.store.saveController(this.#row());
        await this.#refreshRows();
      } catch (err) {
        log.debug({ err }, 'could not write the controller heartbeat; the next one tries again');
      } finally {
        this.#beating = null;
      }
    })();
    return this.#beating;
  }

  async #refreshRows(): Promise<void> {
    try {
      this.#controllers = await this.#o.store.listControllers();
    } catch (err) {
      log.debug({ err }, 'could not read the controllers table; the last one read stands');
    }
  }

  #row(): ControllerRecord {
    return { id: this.id, apiUrl: this.#o.apiUrl(), startedAt: this.startedAt, lastSeenAt: new Date(this.#now()).toISOString(), leaderSince: this.#leaderSince };
  }
}
