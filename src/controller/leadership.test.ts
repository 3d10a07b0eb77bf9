// Leader election on a private PostgreSQL: one of two leads; a leader whose lock session is cut keeps leading while it
// cannot reach PostgreSQL, and steps down once it can and finds the lock taken; the embedded store always leads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Leadership, type ControllerRef } from './leadership.ts';
import { openStore } from '../store/open.ts';
import { LEADER_LOCK_KEY } from '../store/advisory-lock.ts';
import type { Store } from '../store/store.ts';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.ts';
import { cleanup, eventually, tempDir } from '../../test/support/enjin.ts';

interface Candidate {
  leadership: Leadership;
  store: Store;
  events: string[];
  previous: Array<ControllerRef | null>;
}

async function candidate(url: string, dir: string, id: string): Promise<Candidate> {
  const store = await openStore({ dataDir: dir, databaseUrl: url });
  const events: string[] = [];
  const previous: Array<ControllerRef | null> = [];
  const leadership = new Leadership({
    id,
    apiUrl: () => `http://${id}.test`,
    store,
    lock: store.openLeaderLock!(),
    onBecomeLeader: async (p) => {
      events.push('lead');
      previous.push(p);
    },
    onStepDown: async (reason) => {
      events.push(`follow: ${reason}`);
    },
    tickMs: 200,
    heartbeatMs: 200,
  });
  return { leadership, store, events, previous };
}

describe('leadership over PostgreSQL', () => {
  let pgServer: TestPostgres;
  const dirs: string[] = [];

  before(async () => {
    pgServer = await startPostgres();
  });

  after(async () => {
    await pgServer?.stop();
    cleanup(...dirs);
  });

  test('one of two leads; when its session is cut and the other takes the lock, it steps down; both name the leader', async () => {
    const url = await pgServer.createDatabase();
    const dir = tempDir('lead');
    dirs.push(dir);
    const a = await candidate(url, dir, 'ctl_a');
    const b = await candidate(url, dir, 'ctl_b');
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await a.leadership.start();
      assert.equal(a.leadership.leading, true);
      assert.deepEqual(a.previous, [null], 'nobody led before');
      await b.leadership.start();
      assert.equal(b.leadership.leading, false, 'the lock is taken');
      await eventually(() => b.leadership.leader()?.id === 'ctl_a', 'the follower names the leader', 10_000);
      assert.equal(b.leadership.leader()?.apiUrl, 'http://ctl_a.test');

      // b stops (cleanly: it never held the lock). Then a's lock session is cut behind its back and a third session
      // takes the lock before a can reconnect: a finds it taken and steps down (it could not know who led meanwhile).
      await b.leadership.stop();
      const { rows } = await admin.query<{ pid: number }>("select pid from pg_locks where locktype = 'advisory' and granted");
      assert.equal(rows.length, 1, 'one session holds the lock');
      // The third session queues for the lock before a's session is cut, so PostgreSQL hands the lock to it as that
      // session ends: a's reconnect (within a second) can never win the race, however loaded the machine is.
      const taken = admin.query('select pg_advisory_lock($1::bigint)', [LEADER_LOCK_KEY]);
      const killer = new pg.Client({ connectionString: url });
      await killer.connect();
      try {
        await eventually(async () => (await killer.query("select 1 from pg_locks where locktype = 'advisory' and not granted")).rowCount === 1, 'the third session waits for the lock', 10_000);
        await killer.query('select pg_terminate_backend($1)', [rows[0].pid]);
      } finally {
        await killer.end();
      }
      await taken;
      await eventually(() => a.events.at(-1)?.startsWith('follow: another controller took the leader lock'), 'a steps down', 10_000);
      assert.equal(a.leadership.leading, false);

      // The third session lets go: a leads again within a tick or two.
      await admin.query('select pg_advisory_unlock($1::bigint)', [LEADER_LOCK_KEY]);
      await eventually(() => a.leadership.leading, 'a leads again', 10_000);

      // A clean stop gives the lock up at once: a newcomer following a takes over.
      const c = await candidate(url, dir, 'ctl_c');
      try {
        await c.leadership.start();
        assert.equal(c.leadership.leading, false);
        await a.leadership.stop();
        await eventually(() => c.leadership.leading, 'c leads after a stops', 10_000);
      } finally {
        await c.leadership.stop();
        await c.store.close();
      }
    } finally {
      await a.leadership.stop();
      await b.leadership.stop();
      await admin.end();
      await a.store.close();
      await b.store.close();
    }
  });

  test('PostgreSQL stopped: the leader keeps leading (nobody can take the lock) and holds the lock again once it is back', async (t) => {
    if (!pgServer.halt || !pgServer.resume) return t.skip('ENJIN_TEST_DATABASE_URL: a shared server is not ours to stop');
    const url = await pgServer.createDatabase();
    const dir = tempDir('lead');
    dirs.push(dir);
    const a = await candidate(url, dir, 'ctl_a');
    let halted = false;
    try {
      await a.leadership.start();
      assert.equal(a.leadership.leading, true);
      await pgServer.halt();
      halted = true;
      // Several ticks find the lock session gone and PostgreSQL unreachable.
      const ticks = Array.from({ length: 3 }, () => a.leadership.tick());
      await Promise.all(ticks);
      await a.leadership.tick();
      assert.equal(a.leadership.leading, true);
      await pgServer.resume();
      halted = false;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await eventually(async () => (await admin.query("select 1 from pg_locks where locktype = 'advisory' and granted")).rowCount === 1, 'the lock is held again', 15_000);
      } finally {
        await admin.end();
      }
      assert.equal(a.leadership.leading, true);
      assert.deepEqual(a.events, ['lead'], 'it never stepped down');
    } finally {
      if (halted) await pgServer.resume().catch(() => undefined);
      await a.leadership.stop();
      await a.store.close();
    }
  });

  test('the embedded store has no lock: its only controller leads', async () => {
    const dir = tempDir('lead-embedded');
    dirs.push(dir);
    const store = await openStore({ dataDir: dir });
    let led = 0;
    const l = new Leadership({ id: 'ctl_solo', apiUrl: () => '', store, lock: store.openLeaderLock?.() ?? null, onBecomeLeader: async () => void led++, onStepDown: async () => {} });
    try {
      await l.start();
      assert.equal(l.leading, true);
      assert.equal(l.alone, true);
      await l.tick();
      assert.equal(led, 1);
      assert.deepEqual(l.leader(), { id: 'ctl_solo', apiUrl: '' });
    } finally {
      await l.stop();
      await store.close();
    }
  });
});
