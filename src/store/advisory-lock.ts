// The leader lock over PostgreSQL: a session-level advisory lock on a dedicated connection (never the query pool).
import pg from 'pg';
import { componentLogger } from '../log/logger.ts';
import type { LeaderLock } from './store.ts';

const log = componentLogger('leader-lock');

/** Arbitrary but fixed: every enjin controller on one database competes for this key ("enjin" in ASCII). */
export const LEADER_LOCK_KEY = '435728999534';
/** A check or an attempt that takes longer than this counts as "the server is away". */
const QUERY_TIMEOUT_MS = 3_000;
/** The leader queries every second; a session silent for 5 s belongs to a leader that is gone. */
const SESSION_SETTINGS: Array<[string, string]> = [
  ['idle_session_timeout', '5s'],
  ['tcp_keepalives_idle', '2'],
  ['tcp_keepalives_interval', '1'],
  ['tcp_keepalives_count', '3'],
];

export class PostgresLeaderLock implements LeaderLock {
  #client: pg.Client | null = null;
  /** set when the session ended under us: whatever it held is gone */
  #broken = false;
  #held = false;

  constructor(private readonly url: string, private readonly key = LEADER_LOCK_KEY) {}

  async tryAcquire(): Promise<boolean> {
    const client = await this.#connect();
    try {
      const r = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1::bigint) as locked', [this.key]);
      this.#held = r.rows[0]?.locked === true;
      return this.#held;
    } catch (err) {
      this.#drop(err);
      throw err;
    }
  }

  async check(): Promise<boolean> {
    const client = this.#client;
    if (!client || this.#broken || !this.#held) return false;
    try {
      await client.query('select 1');
      return !this.#broken;
    } catch (err) {
      this.#drop(err);
      return false;
    }
  }

  async release(): Promise<void> {
    const client = this.#client;
    this.#client = null;
    this.#held = false;
    if (!client) return;
    // Ending the session releases every advisory lock it holds; no unlock query is needed (or possible, if the
    // server is away). end() waits for the server's goodbye, so bound it.
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000).unref())]);
  }

  async #connect(): Promise<pg.Client> {
    if (this.#client && !this.#broken) return this.#client;
    await this.release();
    this.#broken = false;
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: QUERY_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS, keepAlive: true });
    // Without a listener an 'error' (the server going away) would kill the process; the next check reports it.
    // Events of an older, released session must not condemn the current one.
    client.on('error', (err) => client === this.#client && this.#drop(err));
    client.on('end', () => client === this.#client && this.#drop(null));
    this.#client = client;
    try {
      await client.connect();
      // A leader that vanishes without closing its socket (a host lost, a cut link) must not keep the lock for hours
      // of TCP timeouts: the server ends this session once it has been silent for a few checks (PostgreSQL 14+), and
      // probes the connection itself meanwhile.
      for (const [name, value] of SESSION_SETTINGS) {
        await client.query('select set_config($1, $2, false)', [name, value]).catch((err: unknown) => log.debug({ err, name }, 'the server does not take this setting; the lock works without it'));
      }
    } catch (err) {
      this.#client = null;
      await client.end().catch(() => undefined);
      throw err;
    }
    return client;
  }

  #drop(err: unknown): void {
    if (this.#broken) return;
    this.#broken = true;
    if (this.#held) log.warn({ err }, 'the session holding the leader lock ended; the lock is gone with it');
    this.#held = false;
  }
}
