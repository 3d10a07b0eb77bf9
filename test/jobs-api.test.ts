// GET /v1/jobs over HTTP and `enjin jobs` on top of it: pages with a cursor, filters, bounded limits, coded refusals.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import type { Job } from '../src/core/model.ts';
import { cleanup, runCli, tempDir } from './support/enjin.ts';

const TREES = 60;

describe('listing jobs', () => {
  let dir: string;
  let store: Store;
  let controller: Controller;
  let api: Awaited<ReturnType<typeof buildApi>>;
  let base: string;
  let token: string;

  before(async () => {
    dir = tempDir('jobs-api');
    store = await openStore({ dataDir: dir });
    const jobs: Job[] = [];
    const start = Date.parse('2026-01-01T00:00:00Z');
    for (let i = 0; i < TREES; i++) {
      const id = `job_${String(i).padStart(4, '0')}t`;
      const at = new Date(start + i * 1000).toISOString();
      const tags = { workspace: 'default', project: i % 2 === 0 ? 'even' : 'odd' };
      jobs.push({ id, rootId: id, parentId: null, kind: 'deploy', title: `deploy ${i}`, state: 'succeeded', tags, params: {}, error: null, createdAt: at, startedAt: at, finishedAt: at, position: 0 });
      jobs.push({ id: `${id}k`, rootId: id, parentId: id, kind: 'start', title: `start ${i}`, state: 'succeeded', tags: { ...tags, service: 'web', node: 'local' }, params: {}, error: null, createdAt: at, startedAt: at, finishedAt: at, position: 0 });
    }
    await store.insertJobs(jobs);
    controller = await Controller.start({ store, bus: new MemoryBus(), dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 60_000 });
    api = await buildApi(controller);
    await api.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    controller.apiUrl = base;
    token = await controller.auth.create('test');
    writeFileSync(join(dir, 'credentials.json'), JSON.stringify({ api: base, token }));
  });

  after(async () => {
    await api?.close();
    await controller?.stop();
    await store?.close();
    cleanup(dir);
  });

  const get = async (query: string) => {
    const res = await fetch(`${base}/v1/jobs${query}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as { jobs: Job[]; next: string | null; error?: { code: string; message: string } } };
  };

  test('the default page is the 50 newest trees, with a cursor to the rest', async () => {
    const { status, body } = await get('');
    assert.equal(status, 200);
    assert.equal(body.jobs.length, 50);
    assert.equal(body.jobs[0].id, `job_${String(TREES - 1).padStart(4, '0')}t`);
    assert.ok(body.jobs.every((j) => j.parentId === null));
    assert.equal(body.next, body.jobs[49].id);
  });

  test('following next walks every tree once; filters apply on every page', async () => {
    for (const [query, want] of [['', TREES], ['&project=odd', TREES / 2], ['&node=local&project=even', TREES / 2]] as const) {
      const ids: string[] = [];
      let next: string | null = null;
      do {
        const { status, body } = await get(`?limit=7${query}${next ? `&before=${next}` : ''}`);
        assert.equal(status, 200);
        ids.push(...body.jobs.map((j) => j.id));
        next = body.next;
      } while (next !== null);
      assert.equal(ids.length, want, query);
      assert.equal(new Set(ids).size, want, 'no job twice');
    }
  });

  test('limits out of bounds and unknown or malformed cursors are 400s with a code', async () => {
    for (const limit of ['0', '501', 'abc', '2.5']) {
      const { status, body } = await get(`?limit=${limit}`);
      assert.equal(status, 400, limit);
      assert.equal(body.error?.code, 'invalid_request');
    }
    assert.equal((await get('?limit=500')).body.jobs.length, TREES);
    for (const before of ['job_nope', 'nope']) {
      const { status, body } = await get(`?before=${before}`);
      assert.equal(status, 400, before);
      assert.equal(body.error?.code, 'invalid_cursor');
    }
    // Control characters are refused for every route's query before any route sees them.
    for (const before of ['%00', 'job_%00']) {
      const { status, body } = await get(`?before=${before}`);
      assert.equal(status, 400, before);
      assert.equal(body.error?.code, 'invalid_request');
    }
  });

  test('enjin jobs prints a page and the command for the next; --json carries next', async () => {
    const human = await runCli(['jobs', '-n', '5', '--project', 'odd'], { dataDir: dir });
    assert.equal(human.code, 0, human.stderr);
    const more = /more: enjin (.*) --before (job_\w+)/.exec(human.stdout);
    assert.ok(more, human.stdout);
    assert.match(more[1], /--project odd/, 'the hint keeps the filters');
    const json = await runCli(['--json', 'jobs', '-n', '5', '--project', 'odd', '--before', more[2]], { dataDir: dir });
    assert.equal(json.code, 0, json.stderr);
    assert.equal(json.json.jobs.length, 5);
    assert.ok(json.json.jobs.every((j: Job) => j.tags.project === 'odd' && j.id < more[2]));
    assert.equal(typeof json.json.next, 'string');
    const last = await runCli(['jobs', '-n', '500', '--project', 'odd'], { dataDir: dir });
    assert.doesNotMatch(last.stdout, /more:/, 'no hint on the last page');
    const bad = await runCli(['jobs', '--before', 'job_nope'], { dataDir: dir });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /invalid_cursor/);
  });
});
