// The write-behind store on a private PostgreSQL that is stopped and started: supervision rows queue in order (saves
// of one row coalesced), desired-state writes are refused with store_unavailable, and the queue drains on return.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { EnjinError } from '../core/errors.ts';
import type { Job, Node } from '../core/model.ts';
import { openStore } from './open.ts';
import { WriteBehindStore } from './write-behind.ts';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.ts';
import { cleanup, eventually, tempDir } from '../../test/support/enjin.ts';

let pg: TestPostgres;
const dirs: string[] = [];

before(async () => {
  pg = await startPostgres();
});

after(async () => {
  await pg?.stop();
  cleanup(...dirs);
});

test('rows queue through an outage and are written in order when PostgreSQL returns; desired state is refused meanwhile', async (t) => {
  if (!pg.halt || !pg.resume) return t.skip('ENJIN_TEST_DATABASE_URL: a shared server is not ours to stop');
  const dir = tempDir('write-behind');
  dirs.push(dir);
  const url = await pg.createDatabase();
  const inner = await openStore({ dataDir: dir, databaseUrl: url });
  let desiredWrites = 0;
  const store = new WriteBehindStore(inner, { retryMs: 100, onDesiredWrite: () => void desiredWrites++ });
  const now = new Date().toISOString();
  const node: Node = { id: 'node_1', name: 'one', address: '127.0.0.1', labels: {}, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now };
  const job: Job = { id: 'job_1', rootId: 'job_1', parentId: null, kind: 'reconcile', title: 'reconcile x', state: 'waiting', tags: {}, params: {}, error: null, createdAt: now, startedAt: null, finishedAt: null, position: 0 };
  let halted = false;
  try {
    await store.insertWorkspace({ id: 'ws_1', name: 'default', createdAt: now });
    assert.equal(desiredWrites, 1, 'a desired-state write is announced');
    await store.assertWritable();

    await pg.halt();
    halted = true;
    // Supervision rows: accepted at once, queued.
    await store.saveNode(node);
    await store.insertJobs([job]);
    await store.updateJob(job.id, { state: 'running', startedAt: now });
    await store.saveNode({ ...node, status: 'down' });
    await store.updateJob(job.id, { state: 'failed', error: 'gave up', finishedAt: now });
    assert.equal(store.available, false);
    assert.equal(store.pending, 4, 'the second save of node_1 replaced the first in the queue');

    // Desired state: refused, and nothing is queued for it.
    const refused = await store.saveProject({ id: 'prj_1', workspaceId: 'ws_1', name: 'x', currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now }).then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof EnjinError && refused.code === 'store_unavailable', String(refused));
    await assert.rejects(store.assertWritable(), (e: unknown) => e instanceof EnjinError && e.code === 'store_unavailable');
    assert.equal(store.pending, 4);
    assert.equal(desiredWrites, 1);

    await pg.resume();
    halted = false;
    await eventually(() => store.pending === 0, 'the queue drains', 60_000);
    assert.equal(store.available, true);
    const snapshot = await inner.load();
    assert.equal(snapshot.nodes.find((n) => n.id === 'node_1')?.status, 'down', 'the newest value of the row');
    const stored = await inner.getJob(job.id);
    assert.equal(stored?.state, 'failed', 'updates applied in order, after the insert');
    assert.equal(stored?.error, 'gave up');
    await store.assertWritable();
    await store.saveProject({ id: 'prj_1', workspaceId: 'ws_1', name: 'x', currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now });
    assert.equal(desiredWrites, 2);

    // A follower writes no rows at all, and refuses desired state.
    store.setFollower(true);
    await store.saveNode({ ...node, status: 'ready' });
    assert.equal((await inner.load()).nodes.find((n) => n.id === 'node_1')?.status, 'down');
    await assert.rejects(store.insertWorkspace({ id: 'ws_2', name: 'other', createdAt: now }), (e: unknown) => e instanceof EnjinError && e.code === 'not_leader');
  } finally {
    if (halted) await pg.resume().catch(() => undefined);
    await store.close();
  }
});
