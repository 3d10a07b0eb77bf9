import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobEngine, type JobAction } from './engine.ts';
import { openStore } from '../../store/open.ts';
import type { Store } from '../../store/store.ts';

// The engine runs against the real embedded store: job state and logs are what it must get right.
const dir = mkdtempSync(join(tmpdir(), 'enjin-jobs-'));
const storePromise = openStore({ dataDir: dir });
after(async () => {
  await (await storePromise).close();
  rmSync(dir, { recursive: true, force: true });
});

async function setup(actions: Record<string, JobAction>) {
  const store: Store = await storePromise;
  const finished: string[] = [];
  const engine = new JobEngine({ store, actions, onTreeFinished: (root) => void finished.push(`${root.id}:${root.state}`) });
  return { store, engine, finished };
}

test('leaves run first, siblings in parallel, the parent after all children succeeded', async () => {
  const order: string[] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const step: JobAction = async ({ job, log }) => {
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    order.push(`start ${job.title}`);
    log(`hello from ${job.title}`);
    await new Promise((r) => setTimeout(r, 20));
    order.push(`end ${job.title}`);
    concurrent--;
  };
  const { engine, store } = await setup({ step });
  const root = await engine.start({
    kind: 'step', title: 'root', tags: { project: 'p' },
    children: [{ kind: 'step', title: 'a', children: [{ kind: 'step', title: 'a1' }] }, { kind: 'step', title: 'b' }],
  });
  const done = await engine.wait(root.id);
  assert.equal(done.state, 'succeeded');
  assert.ok(order.indexOf('end a1') < order.indexOf('start a'));
  assert.ok(order.indexOf('end a') < order.indexOf('start root') && order.indexOf('end b') < order.indexOf('start root'));
  assert.equal(maxConcurrent, 2, 'a1 and b run side by side');
  const tree = await engine.getTree(root.id, true);
  assert.equal(tree.children.length, 2);
  assert.deepEqual(tree.children[0].children[0].log, ['hello from a1']);
  assert.equal(tree.children[0].tags.project, 'p', 'children inherit project tags');
  assert.equal((await store.getJob(root.id))?.state, 'succeeded');
});

test('a failure aborts running siblings and marks waiting jobs aborted', async () => {
  let siblingSawAbort = false;
  const { engine, finished } = await setup({
    noop: async () => {},
    fail: async () => { throw new Error('boom'); },
    slow: async ({ signal }) => {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => { siblingSawAbort = true; resolve(); }));
    },
  });
  const root = await engine.start({
    kind: 'noop', title: 'root',
    children: [{ kind: 'noop', title: 'parent', children: [{ kind: 'fail', title: 'bad' }, { kind: 'slow', title: 'slow' }] }],
  });
  const done = await engine.wait(root.id);
  assert.equal(done.state, 'failed');
  assert.match(done.error ?? '', /bad: boom/);
  assert.ok(siblingSawAbort);
  const tree = await engine.getTree(root.id, true);
  const parent = tree.children[0];
  assert.equal(parent.state, 'aborted');
  assert.deepEqual(parent.children.map((c) => c.state), ['failed', 'aborted']);
  assert.deepEqual(finished, [`${root.id}:failed`]);
});

test('a user abort ends the tree as aborted and a finished tree cannot be aborted', async () => {
  const { engine } = await setup({
    noop: async () => {},
    forever: ({ signal }) => new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
  });
  const root = await engine.start({ kind: 'noop', title: 'root', children: [{ kind: 'forever', title: 'wait' }] });
  await new Promise((r) => setTimeout(r, 10));
  const ended = await engine.abort(root.id, 'aborted by a user');
  assert.equal(ended.state, 'aborted');
  const tree = await engine.getTree(root.id, false);
  assert.equal(tree.children[0].state, 'aborted');
  await assert.rejects(engine.abort(root.id), /nothing to abort/);
});

test('recover ends interrupted trees with a reason, never leaves them running', async () => {
  const { engine, store, finished } = await setup({ noop: async () => {} });
  const now = new Date().toISOString();
  const base = { kind: 'noop', tags: {}, params: {}, error: null, createdAt: now, startedAt: now, finishedAt: null };
  await store.insertJobs([
    { ...base, id: 'job_r', rootId: 'job_r', parentId: null, title: 'root', state: 'waiting', position: 0 },
    { ...base, id: 'job_c', rootId: 'job_r', parentId: 'job_r', title: 'child', state: 'running', position: 0 },
    { ...base, id: 'job_d', rootId: 'job_r', parentId: 'job_c', title: 'leaf', state: 'succeeded', position: 0 },
  ]);
  // What listings follow (the job index): every job the recovery ended is announced, so none stays listed as waiting.
  const announced = new Map<string, string>();
  engine.events.on('change', (j: { id: string; state: string }) => announced.set(j.id, j.state));
  await engine.recover((await store.load()).unfinishedJobs);
  assert.deepEqual(Object.fromEntries(announced), { job_r: 'failed', job_c: 'failed' });
  assert.equal((await store.getJob('job_r'))?.state, 'failed');
  assert.equal((await store.getJob('job_c'))?.state, 'failed');
  assert.equal((await store.getJob('job_d'))?.state, 'succeeded');
  assert.match((await store.getJob('job_r'))?.error ?? '', /interrupted/);
  assert.deepEqual(finished, ['job_r:failed']);
});

test('the root shows running as soon as any job of its tree runs; parents in between wait for their turn', async () => {
  let release!: () => void;
  const leafRunning = new Promise<void>((resolve) => {
    release = resolve;
  });
  let rootRan = 0;
  let unblock!: () => void;
  const blocked = new Promise<void>((r) => (unblock = r));
  const { engine } = await setup({
    root: async () => void rootRan++,
    noop: async () => {},
    leaf: async () => {
      release();
      await blocked;
    },
  });
  const root = await engine.start({ kind: 'root', title: 'deploy', children: [{ kind: 'noop', title: 'start', children: [{ kind: 'leaf', title: 'prepare' }] }] });
  await leafRunning;
  const during = await engine.getTree(root.id, false);
  assert.equal(during.children[0].children[0].state, 'running', 'the prepare runs');
  assert.equal(during.state, 'running', 'so the deploy is running, not waiting');
  assert.ok(during.startedAt);
  assert.equal(during.children[0].state, 'waiting', 'the start has not begun');
  assert.equal(rootRan, 0, "the root's own action still runs last");
  unblock();
  const done = await engine.wait(root.id);
  assert.equal(done.state, 'succeeded');
  assert.equal(rootRan, 1, 'the root ran once');
});

test('a queued root is listed and stored as queued, keeps its id when it starts, and ends for good when aborted', async () => {
  const { engine, store, finished } = await setup({ step: async () => {} });
  const later = await engine.queue({ kind: 'step', title: 'scale later', tags: { project: 'q' }, params: { projectId: 'p' } });
  assert.equal(later.state, 'queued');
  assert.equal((await store.getJob(later.id))?.state, 'queued');
  assert.equal((await engine.getTree(later.id, true)).children.length, 0);
  const started = await engine.start({ kind: 'step', title: 'scale now', tags: { project: 'q', version: 'v2' }, children: [{ kind: 'step', title: 'child' }] }, later);
  assert.equal(started.id, later.id, 'followers of the queued id follow the tree');
  assert.equal(started.createdAt, later.createdAt, 'it keeps its place in listings');
  assert.equal((await engine.wait(later.id)).state, 'succeeded');
  const stored = await store.getJobTree(later.id);
  assert.equal(stored.length, 2);
  assert.equal(stored[0].tags.version, 'v2', 'the plan\'s tags are stored on the root');

  const dropped = await engine.queue({ kind: 'step', title: 'never', tags: { project: 'q' } });
  const aborted = await engine.abort(dropped.id, 'aborted by a user');
  assert.equal(aborted.state, 'aborted');
  assert.equal((await store.getJob(dropped.id))?.state, 'aborted');
  assert.equal(engine.isQueued(dropped.id), false);
  await assert.rejects(engine.start({ kind: 'step', title: 'x' }, dropped), /no longer queued/);
  await assert.rejects(engine.abort(dropped.id), /nothing to abort/);
  assert.ok(!finished.includes(`${dropped.id}:aborted`), 'nothing ran, so nothing is converged after it');
});

test('recovery ends a queued root with a reason and hands it to no one', async () => {
  const { engine, store, finished } = await setup({ step: async () => {} });
  const queued = await engine.queue({ kind: 'step', title: 'waiting for its turn', tags: { project: 'r' } });
  const fresh = new JobEngine({ store, actions: { step: async () => {} }, onTreeFinished: (root) => void finished.push(`${root.id}:${root.state}`) });
  const unfinished = (await store.load()).unfinishedJobs.filter((j) => j.rootId === queued.id);
  assert.equal(unfinished.length, 1, 'queued rows are loaded as unfinished');
  await fresh.recover(unfinished, 'the controller restarted');
  const row = await store.getJob(queued.id);
  assert.equal(row?.state, 'aborted');
  assert.match(row?.error ?? '', /restarted before this queued change started.*request it again/);
  assert.ok(!finished.some((f) => f.startsWith(queued.id)));
  void engine;
});
