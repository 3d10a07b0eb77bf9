import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobIndex } from './job-index.ts';
import { JobEngine } from './engine.ts';
import { openStore } from '../../store/open.ts';
import type { Store } from '../../store/store.ts';
import type { Job, JobState, JobTags } from '../../core/model.ts';
import type { JobFilter } from '../../store/store.ts';
import type { EnjinError } from '../../core/errors.ts';

// Against the real embedded store: the index must page exactly as the store would, in memory and past its window.
const STATES: JobState[] = ['succeeded', 'failed', 'aborted', 'succeeded'];

function history(): Job[] {
  const jobs: Job[] = [];
  const start = Date.parse('2026-01-01T00:00:00Z');
  for (let i = 0; i < 23; i++) {
    // Trees two by two share a millisecond, as trees started together do: ids break the tie.
    const createdAt = new Date(start + Math.floor(i / 2) * 1000).toISOString();
    const tags: JobTags = { workspace: 'default', project: i % 3 === 0 ? 'hello' : 'world', version: `v${1 + (i % 2)}` };
    const id = `job_${String(i).padStart(4, '0')}root`;
    const base = { error: null, createdAt, startedAt: null, finishedAt: null, params: { n: i } };
    jobs.push({ ...base, id, rootId: id, parentId: null, kind: 'deploy', title: `tree ${i}`, state: STATES[i % STATES.length], tags, position: 0 });
    jobs.push({ ...base, id: `job_${String(i).padStart(4, '0')}kid`, rootId: id, parentId: id, kind: 'start', title: `start ${i}`, state: 'succeeded', tags: { ...tags, service: 'web', node: i % 2 === 0 ? 'node_a' : 'node_b' }, position: 0 });
  }
  return jobs;
}

function expected(all: Job[], f: JobFilter): string[] {
  return all
    .filter((j) => (!f.rootsOnly || j.parentId === null) && (!f.states?.length || f.states.includes(j.state)))
    .filter((j) => Object.entries(f.tags ?? {}).every(([k, v]) => v === undefined || j.tags[k as keyof JobTags] === v))
    .sort((a, b) => (a.createdAt !== b.createdAt ? (a.createdAt < b.createdAt ? 1 : -1) : a.id < b.id ? 1 : -1))
    .map((j) => j.id);
}

async function walk(index: JobIndex, filter: JobFilter): Promise<string[]> {
  const seen: string[] = [];
  let before: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await index.list({ ...filter, before });
    assert.ok(page.jobs.length <= (filter.limit ?? 50));
    seen.push(...page.jobs.map((j) => j.id));
    if (page.next === null) return seen;
    assert.equal(page.next, page.jobs.at(-1)!.id, 'next is the last job of the page');
    before = page.next;
  }
  throw new Error('the cursor never reached the end');
}

describe('job index', () => {
  let dir: string;
  let store: Store;
  const all = history();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'enjin-job-index-'));
    store = await openStore({ dataDir: dir });
    await store.insertJobs(all);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const filters: JobFilter[] = [
    { rootsOnly: true, limit: 4 },
    { rootsOnly: true, limit: 1 },
    { limit: 7 },
    { rootsOnly: true, limit: 3, tags: { project: 'hello' } },
    { rootsOnly: true, limit: 2, tags: { project: 'world', version: 'v2' } },
    { limit: 5, tags: { node: 'node_a' } },
    { limit: 5, tags: { service: 'web', project: 'hello' } },
    { rootsOnly: true, limit: 3, states: ['failed', 'aborted'] },
    { rootsOnly: true, limit: 500 },
    { rootsOnly: true, limit: 3, tags: { project: 'nobody' } },
  ];

  for (const window of [1000, 9, 1]) {
    test(`a cursor walks every matching job once, newest first (window ${window}${window < all.length ? ': older pages come from the store' : ''})`, async () => {
      const index = new JobIndex(store, new EventEmitter(), { window });
      await index.load();
      assert.equal(index.size, Math.min(window, all.length));
      for (const f of filters) assert.deepEqual(await walk(index, f), expected(all, f), JSON.stringify(f));
    });
  }

  test('limits out of bounds and bad cursors are 400s with a code, in memory and from the store', async () => {
    for (const window of [1000, 3]) {
      const index = new JobIndex(store, new EventEmitter(), { window });
      await index.load();
      for (const limit of [0, 501, 2.5, -1]) {
        await assert.rejects(index.list({ limit }), (e: EnjinError) => e.code === 'invalid_request' && e.status === 400, `limit ${limit}`);
      }
      for (const before of ['job_nope', 'nope', 'job_\u0000x', '', 'x'.repeat(5000)]) {
        await assert.rejects(index.list({ before }), (e: EnjinError) => e.code === 'invalid_cursor' && e.status === 400 && /start again without it/.test(e.message), JSON.stringify(before.slice(0, 10)));
      }
    }
  });

  test('jobs the engine starts and finishes are listed at once, with their current state', async () => {
    const engine = new JobEngine({ store, actions: { step: async () => {} } });
    const index = new JobIndex(store, engine.events, { window: 5 });
    await index.load();
    const root = await engine.start({ kind: 'step', title: 'fresh', tags: { project: 'fresh' }, children: [{ kind: 'step', title: 'child' }] });
    const first = await index.list({ rootsOnly: true, limit: 1 });
    assert.equal(first.jobs[0].id, root.id, 'the new tree is the newest');
    await engine.wait(root.id);
    const done = await index.list({ rootsOnly: true, limit: 1, tags: { project: 'fresh' } });
    assert.equal(done.jobs[0].state, 'succeeded');
    assert.equal(done.next, null);
    assert.equal(index.size, 5, 'the window keeps its size');
    assert.deepEqual(await walk(index, { rootsOnly: true, limit: 4, tags: { project: 'hello' } }), expected(all, { rootsOnly: true, tags: { project: 'hello' } }), 'older pages still come whole from the store');
    await engine.stop();
  });
});
