// The Store conformance suite, run against embedded PGlite and a private PostgreSQL server, plus each backend's own cases.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { Instance, Job, JobState, JobTags, Manifest, Node, Project, Version, Workspace } from '../core/model.ts';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.ts';
import { openStore } from './open.ts';
import type { Store, TokenRecord } from './store.ts';

/** A fresh, empty store, and a way to open the same data again once it is closed. */
interface FreshStore {
  store: Store;
  reopen(): Promise<Store>;
}

// ---------- fixtures: every field set, nullable ones both ways across the set ----------

let clock = Date.parse('2030-01-02T03:04:05.006Z');
/** Distinct, increasing ISO timestamps with milliseconds, as the controller writes them. */
const at = (): string => new Date((clock += 1001)).toISOString();
let serial = 0;
const id = (prefix: string): string => `${prefix}_${(++serial).toString().padStart(6, '0')}`;

const workspace = (name = `ws-${serial + 1}`): Workspace => ({ id: id('ws'), name, createdAt: at() });

const project = (workspaceId: string, name = `p-${serial + 1}`, extra: Partial<Project> = {}): Project => ({
  id: id('prj'),
  workspaceId,
  name,
  currentVersionId: null,
  routedVersionId: null,
  scale: {},
  createdAt: at(),
  updatedAt: at(),
  ...extra,
});

const manifest = (name: string): Manifest => ({
  project: name,
  prepare: ['npm ci', 'npm run build'],
  env: { NODE_ENV: 'production', EMPTY: '' },
  services: {
    web: {
      name: 'web',
      command: 'node server.js --port "$PORT"',
      instances: 2,
      listens: true,
      hostnames: ['hello.example.com', '*.hello.example.com'],
      health: { http: '/healthz', startTimeout: 30 },
      env: { LOG: 'info ünïcødé ✓' },
      stopTimeout: 10,
    },
    worker: { name: 'worker', command: 'node worker.js', instances: 1, listens: false, hostnames: [], health: null, env: {}, stopTimeout: 5 },
  },
});

const version = (p: Project, n: number): Version => ({
  id: id('ver'),
  projectId: p.id,
  number: n,
  sha256: 'ab'.repeat(32),
  size: 5_000_000_123, // past 2^32: the column is int8
  manifest: manifest(p.name),
  createdAt: at(),
});

const node = (extra: Partial<Node> = {}): Node => ({
  id: id('node'),
  name: `host-${serial}`,
  address: '10.0.0.7',
  labels: { zone: 'a', disk: 'ssd' },
  status: 'ready',
  draining: false,
  roles: ['agent'],
  compartment: null,
  publicKey: null,
  lastSeenAt: at(),
  createdAt: at(),
  ...extra,
});

const instance = (p: Project, v: Version, nodeId: string, current: Instance['current'] = null): Instance => ({
  id: id('inst'),
  workspaceId: p.workspaceId,
  projectId: p.id,
  service: 'web',
  versionId: v.id,
  nodeId,
  desired: 'running',
  createdAt: at(),
  current,
});

const running = (nodeId: string): NonNullable<Instance['current']> => ({
  state: 'running',
  nodeId,
  pid: 4242,
  host: '127.0.0.1',
  port: 41000,
  restarts: 2,
  lastExit: { code: null, signal: 'SIGKILL', at: at() },
  message: 'restarted after a crash',
  reportedAt: at(),
});

const job = (extra: Partial<Job> & { id?: string } = {}): Job => {
  const jobId = extra.id ?? id('job');
  return {
    id: jobId,
    rootId: jobId,
    parentId: null,
    kind: 'deploy',
    title: `job ${jobId}`,
    state: 'waiting',
    tags: {},
    params: {},
    error: null,
    createdAt: at(),
    startedAt: null,
    finishedAt: null,
    position: 0,
    ...extra,
  };
};

const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

function isCode(code: string, status: number) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof EnjinError, `expected an EnjinError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    return true;
  };
}

// ---------- the conformance suite ----------

export function describeStore(name: string, makeStore: () => Promise<FreshStore>): void {
  describe(`Store conformance: ${name}`, () => {
    const open: Store[] = [];
    const fresh = async (): Promise<FreshStore> => {
      const f = await makeStore();
      open.push(f.store);
      return {
        store: f.store,
        reopen: async () => {
          const s = await f.reopen();
          open.push(s);
          return s;
        },
      };
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });

    test('a fresh store loads empty and names its backend', async () => {
      const { store } = await fresh();
      assert.equal(store.backend, name);
      assert.deepEqual(await store.load(), { workspaces: [], projects: [], versions: [], instances: [], nodes: [], unfinishedJobs: [] });
    });

    test('data survives close and reopen, and migrations run again harmlessly', async () => {
      const { store, reopen } = await fresh();
      const w = workspace();
      const p = project(w.id);
      await store.insertWorkspace(w);
      await store.saveProject(p);
      const j = job({ state: 'running', tags: { project: p.name } });
      await store.insertJobs([j]);
      await store.appendJobLog([{ jobId: j.id, at: at(), line: 'before the restart' }]);
      const snapshot = await store.load();
      await store.close();

      const second = await reopen();
      assert.deepEqual(await second.load(), snapshot);
      await second.close();
      const third = await reopen();
      assert.deepEqual(await third.load(), snapshot);
      assert.deepEqual((await third.getJobLog(j.id)).map((l) => l.line), ['before the restart']);
    });

    test('every entity round-trips its domain type exactly', async () => {
      const { store } = await fresh();
      const w = workspace();
      await store.insertWorkspace(w);
      const p = project(w.id, 'hello', { scale: { web: 3, worker: 0 } });
      await store.saveProject(p);
      const v1 = version(p, 1);
      const v2 = version(p, 2);
      await store.insertVersion(v1);
      await store.insertVersion(v2);
      const deployed: Project = { ...p, currentVersionId: v2.id, routedVersionId: v1.id, updatedAt: at() };
      await store.saveProject(deployed);
      const n1 = node();
      const n2 = node({ status: 'down', lastSeenAt: null, labels: {} });
      await store.saveNode(n1);
      await store.saveNode(n2);
      const placed = instance(deployed, v2, n1.id);
      const moved = instance(deployed, v2, n1.id, running(n2.id)); // placed on n1, reported by n2
      const exited = instance(deployed, v1, n2.id, {
        state: 'failed',
        nodeId: n2.id,
        pid: null,
        host: null,
        port: null,
        restarts: 0,
        lastExit: null,
        message: null,
        reportedAt: at(),
      });
      for (const i of [placed, moved, exited]) await store.saveInstance(i);

      const snapshot = await store.load();
      assert.deepEqual(snapshot.workspaces, [w]);
      assert.deepEqual(snapshot.projects, [deployed]);
      assert.deepEqual(byId(snapshot.versions), byId([v1, v2]));
      assert.deepEqual(byId(snapshot.nodes), byId([n1, n2]));
      assert.deepEqual(byId(snapshot.instances), byId([placed, moved, exited]));

      // Replace by id: the current part goes away, the desired part changes; a node goes down.
      const stopped: Instance = { ...moved, desired: 'stopped', current: null };
      await store.saveInstance(stopped);
      const downed: Node = { ...n1, status: 'down', labels: { zone: 'b' } };
      await store.saveNode(downed);
      const after = await store.load();
      assert.deepEqual(byId(after.instances), byId([placed, stopped, exited]));
      assert.deepEqual(byId(after.nodes), byId([downed, n2]));

      await store.deleteInstance(placed.id);
      await store.deleteInstance(placed.id); // already gone: not an error
      assert.deepEqual(byId((await store.load()).instances), byId([stopped, exited]));

      // Removing a node forgets the instance rows placed on it, and only those.
      await store.deleteNode(n2.id);
      await store.deleteNode(n2.id); // already gone: not an error
      const removed = await store.load();
      assert.deepEqual(byId(removed.nodes), byId([downed]));
      assert.deepEqual(byId(removed.instances), byId([stopped]));
    });

    test('tokens are found by hash, global or scoped to a workspace', async () => {
      const { store } = await fresh();
      const w = workspace();
      await store.insertWorkspace(w);
      const admin: TokenRecord = { id: id('tok'), name: 'admin', hash: 'a'.repeat(64), workspaceId: null, createdAt: at() };
      const scoped: TokenRecord = { id: id('tok'), name: 'ci', hash: 'b'.repeat(64), workspaceId: w.id, createdAt: at() };
      await store.insertToken(admin);
      await store.insertToken(scoped);
      assert.deepEqual(await store.findTokenByHash(admin.hash), admin);
      assert.deepEqual(await store.findTokenByHash(scoped.hash), scoped);
      assert.equal(await store.findTokenByHash('c'.repeat(64)), null);
    });

    test('every token is listed (for checks in memory); ping answers', async () => {
      const { store } = await fresh();
      assert.deepEqual(await store.listTokens(), []);
      const t1: TokenRecord = { id: id('tok'), name: 'one', hash: 'd'.repeat(64), workspaceId: null, createdAt: at() };
      const t2: TokenRecord = { id: id('tok'), name: 'two', hash: 'e'.repeat(64), workspaceId: null, createdAt: at() };
      await store.insertToken(t1);
      await store.insertToken(t2);
      assert.deepEqual(await store.listTokens(), [t1, t2]);
      await store.ping();
    });

    test('controllers heartbeat their rows: saved again by id, listed oldest first', async () => {
      const { store } = await fresh();
      const a = { id: 'ctl_a', apiUrl: 'http://a:7070', startedAt: at(), lastSeenAt: at(), leaderSince: null };
      const b = { id: 'ctl_b', apiUrl: '', startedAt: at(), lastSeenAt: at(), leaderSince: at() };
      await store.saveController(a);
      await store.saveController(b);
      const a2 = { ...a, lastSeenAt: at(), leaderSince: at() };
      await store.saveController(a2);
      assert.deepEqual(await store.listControllers(), [a2, b]);
      await store.deleteControllersSeenBefore(new Date(Date.parse(b.lastSeenAt) + 1).toISOString());
      assert.deepEqual(await store.listControllers(), [a2], 'b was last seen before then, a2 after');
      assert.equal(typeof store.openLeaderLock, name === 'postgres' ? 'function' : 'undefined', 'only a server store has a leader lock');
    });

    test('broken uniqueness and missing references are 409 conflicts that change nothing', async () => {
      const { store } = await fresh();
      const w = workspace('acme');
      await store.insertWorkspace(w);
      const p = project(w.id, 'hello');
      await store.saveProject(p);
      const before = await store.load();

      await assert.rejects(store.insertWorkspace(workspace('acme')), isCode('conflict', 409));
      await assert.rejects(store.saveProject(project(w.id, 'hello')), (err) => {
        isCode('conflict', 409)(err);
        assert.match((err as Error).message, /project with this name already exists/);
        return true;
      });
      await assert.rejects(store.saveProject(project('ws_missing', 'other')), isCode('conflict', 409));
      await store.insertVersion(version(p, 1));
      await assert.rejects(store.insertVersion(version(p, 1)), isCode('conflict', 409));
      const t: TokenRecord = { id: id('tok'), name: 'one', hash: 'd'.repeat(64), workspaceId: null, createdAt: at() };
      await store.insertToken(t);
      await assert.rejects(store.insertToken({ ...t, id: id('tok') }), isCode('conflict', 409));

      const after = await store.load();
      assert.deepEqual(after.workspaces, before.workspaces);
      assert.deepEqual(after.projects, before.projects);
      assert.equal(after.versions.length, 1);

      // The same name in another workspace is fine.
      const other = workspace('other');
      await store.insertWorkspace(other);
      await store.saveProject(project(other.id, 'hello'));
    });

    test('deleteProject removes its versions and instances together; jobs stay as history', async () => {
      const { store } = await fresh();
      const w = workspace();
      await store.insertWorkspace(w);
      const n = node();
      await store.saveNode(n);
      const doomed = project(w.id, 'doomed');
      const kept = project(w.id, 'kept');
      for (const p of [doomed, kept]) {
        await store.saveProject(p);
        const v = version(p, 1);
        await store.insertVersion(v);
        await store.saveInstance(instance(p, v, n.id, running(n.id)));
      }
      const history = job({ state: 'succeeded', tags: { project: 'doomed' } });
      await store.insertJobs([history]);
      const before = await store.load();

      await store.deleteProject(doomed.id);
      const after = await store.load();
      assert.deepEqual(after.projects, before.projects.filter((p) => p.id !== doomed.id));
      assert.deepEqual(after.versions, before.versions.filter((v) => v.projectId !== doomed.id));
      assert.deepEqual(after.instances, before.instances.filter((i) => i.projectId !== doomed.id));
      assert.equal(after.versions.length, 1);
      assert.equal(after.instances.length, 1);
      assert.deepEqual(await store.getJob(history.id), history);

      await store.deleteProject(doomed.id); // already gone: not an error
      // The name is free again.
      await store.saveProject(project(w.id, 'doomed'));
    });

    test('jobs: a tree goes in whole, updates patch it, and the tree comes back depth-first', async () => {
      const { store } = await fresh();
      const root = job({ kind: 'deploy', tags: { workspace: 'acme', project: 'hello', version: 'ver_1' }, params: { versionId: 'ver_1', nested: { list: [1, 'two', null] } } });
      const child = (position: number, parent: Job, extra: Partial<Job> = {}): Job =>
        job({ rootId: root.id, parentId: parent.id, kind: 'start', position, tags: root.tags, ...extra });
      const a = child(1, root);
      const b = child(0, root);
      const a1 = child(0, a, { kind: 'prepare', tags: { ...root.tags, node: 'node_1' } });
      const b1 = child(1, b);
      const b0 = child(0, b);
      // Inserted children first, shuffled: insertJobs must not care.
      await store.insertJobs([b0, a1, a, root, b1, b]);

      assert.deepEqual(await store.getJob(a1.id), a1);
      assert.equal(await store.getJob('job_nope'), null);
      assert.deepEqual((await store.getJobTree(root.id)).map((j) => j.id), [root, b, b0, b1, a, a1].map((j) => j.id));
      assert.deepEqual(await store.getJobTree(root.id), [root, b, b0, b1, a, a1]);
      assert.deepEqual(await store.getJobTree('job_nope'), []);

      const startedAt = at();
      await store.updateJob(a1.id, { state: 'running', startedAt });
      assert.deepEqual(await store.getJob(a1.id), { ...a1, state: 'running', startedAt });
      const finishedAt = at();
      await store.updateJob(a1.id, { state: 'failed', error: 'prepare failed: exit 1', finishedAt, params: { attempt: 2 } });
      assert.deepEqual(await store.getJob(a1.id), { ...a1, state: 'failed', startedAt, finishedAt, error: 'prepare failed: exit 1', params: { attempt: 2 } });
      await store.updateJob(a1.id, { error: null, finishedAt: null });
      assert.deepEqual(await store.getJob(a1.id), { ...a1, state: 'failed', startedAt, params: { attempt: 2 } });
      await store.updateJob(a1.id, {}); // nothing to change, but the job exists

      await assert.rejects(store.updateJob('job_nope', { state: 'aborted' }), isCode('not_found', 404));
      await assert.rejects(store.updateJob('job_nope', {}), isCode('not_found', 404));
    });

    test('insertJobs is all or nothing', async () => {
      const { store } = await fresh();
      const existing = job();
      await store.insertJobs([existing]);
      const fresh1 = job();
      await assert.rejects(store.insertJobs([fresh1, { ...existing, title: 'again' }]), isCode('conflict', 409));
      assert.equal(await store.getJob(fresh1.id), null);
      assert.deepEqual(await store.getJob(existing.id), existing);
      await store.insertJobs([]);
    });

    test('load returns every job of each tree with a job waiting or running', async () => {
      const { store } = await fresh();
      const tree = (rootState: JobState, childStates: JobState[]): Job[] => {
        const root = job({ state: rootState });
        return [root, ...childStates.map((state, i) => job({ rootId: root.id, parentId: root.id, state, position: i }))];
      };
      const done = tree('succeeded', ['succeeded', 'succeeded']);
      const failed = tree('failed', ['failed', 'aborted']);
      const busy = tree('waiting', ['succeeded', 'running', 'waiting']);
      const queued = tree('waiting', []);
      const leafOnly = tree('waiting', ['succeeded', 'waiting']);
      await store.insertJobs([...done, ...failed, ...busy, ...queued, ...leafOnly]);
      const { unfinishedJobs } = await store.load();
      assert.deepEqual(byId(unfinishedJobs), byId([...busy, ...queued, ...leafOnly]));

      for (const j of busy) await store.updateJob(j.id, { state: 'succeeded' });
      assert.deepEqual(byId((await store.load()).unfinishedJobs), byId([...queued, ...leafOnly]));
    });

    test('listJobs: newest first, filtered by roots, states and tags, paged with before and limit', async () => {
      const { store } = await fresh();
      const roots: Job[] = [];
      const all: Job[] = [];
      const tagsFor = (i: number): JobTags => ({ workspace: 'acme', project: i % 2 === 0 ? 'hello' : 'world', ...(i % 3 === 0 ? { node: 'node_1' } : {}) });
      const states: JobState[] = ['succeeded', 'failed', 'running', 'waiting', 'aborted'];
      for (let i = 0; i < 12; i++) {
        const root = job({ state: states[i % states.length], tags: tagsFor(i), title: `tree ${i}` });
        const kid = job({ rootId: root.id, parentId: root.id, state: 'succeeded', tags: { ...tagsFor(i), service: 'web' }, kind: 'start' });
        roots.push(root);
        all.push(root, kid);
      }
      await store.insertJobs(all);
      const newestFirst = (js: Job[]): Job[] => [...js].sort((x, y) => (x.createdAt < y.createdAt ? 1 : x.createdAt > y.createdAt ? -1 : x.id < y.id ? 1 : -1));

      assert.deepEqual(await store.listJobs({}), newestFirst(all));
      assert.deepEqual(await store.listJobs({ rootsOnly: true }), newestFirst(roots));
      assert.deepEqual(await store.listJobs({ rootsOnly: true, states: ['failed', 'running'] }), newestFirst(roots.filter((j) => j.state === 'failed' || j.state === 'running')));
      assert.deepEqual(await store.listJobs({ states: [] }), newestFirst(all), 'no states given: no state filter');
      assert.deepEqual(await store.listJobs({ tags: { project: 'hello' } }), newestFirst(all.filter((j) => j.tags.project === 'hello')));
      assert.deepEqual(
        await store.listJobs({ rootsOnly: true, tags: { project: 'hello', node: 'node_1' } }),
        newestFirst(roots.filter((j) => j.tags.project === 'hello' && j.tags.node === 'node_1')),
        'every given tag must match',
      );
      assert.deepEqual(await store.listJobs({ tags: { service: 'web', project: 'world' } }), newestFirst(all.filter((j) => j.tags.service === 'web' && j.tags.project === 'world')));
      assert.deepEqual(await store.listJobs({ tags: { project: 'nope' } }), []);
      assert.deepEqual(await store.listJobs({ tags: { project: undefined } }), newestFirst(all), 'an undefined tag is no filter');

      assert.deepEqual(await store.listJobs({ limit: 5 }), newestFirst(all).slice(0, 5));
      // Paging with before walks every root once, in order.
      const paged: Job[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await store.listJobs({ rootsOnly: true, limit: 5, before: cursor });
        if (page.length === 0) break;
        paged.push(...page);
        cursor = page[page.length - 1].id;
      }
      assert.deepEqual(paged, newestFirst(roots));
      const pivot = newestFirst(roots)[3];
      assert.deepEqual(await store.listJobs({ rootsOnly: true, before: pivot.id }), newestFirst(roots).slice(4));

      await assert.rejects(store.listJobs({ before: 'job_nope' }), isCode('invalid_cursor', 400));
      await assert.rejects(store.listJobs({ limit: 0 }), isCode('invalid_request', 400));
      await assert.rejects(store.listJobs({ limit: 2.5 }), isCode('invalid_request', 400));
      assert.equal((await store.listJobs({ limit: 100_000 })).length, all.length, 'a limit above the maximum is capped, not refused');
    });

    test('listJobs defaults to 50 and caps at 500', async () => {
      const { store } = await fresh();
      const jobs = Array.from({ length: 520 }, () => job({ state: 'succeeded' }));
      await store.insertJobs(jobs);
      assert.equal((await store.listJobs({})).length, 50);
      assert.equal((await store.listJobs({ limit: 501 })).length, 500);
    });

    test('job logs keep their order, number lines, and read incrementally after a seq', async () => {
      const { store } = await fresh();
      const a = job();
      const b = job();
      await store.insertJobs([a, b]);
      const t = at();
      await store.appendJobLog([
        { jobId: a.id, at: t, line: 'a1' },
        { jobId: b.id, at: t, line: 'b1' },
        { jobId: a.id, at: t, line: 'a2' },
      ]);
      await store.appendJobLog([]);
      const many = Array.from({ length: 1500 }, (_, i) => ({ jobId: a.id, at: t, line: `line ${i} with ünïcødé` }));
      await store.appendJobLog(many);

      const log = await store.getJobLog(a.id);
      assert.deepEqual(log.map((l) => l.line), ['a1', 'a2', ...many.map((l) => l.line)]);
      assert.ok(log.every((l) => l.jobId === a.id && l.at === t && Number.isSafeInteger(l.seq)));
      for (let i = 1; i < log.length; i++) assert.ok(log[i].seq > log[i - 1].seq, 'seq increases');
      assert.deepEqual(await store.getJobLog(b.id), [{ jobId: b.id, at: t, line: 'b1', seq: (await store.getJobLog(b.id))[0].seq }]);

      const tail = await store.getJobLog(a.id, log[1].seq);
      assert.deepEqual(tail, log.slice(2));
      assert.deepEqual(await store.getJobLog(a.id, log[log.length - 1].seq), []);
      assert.deepEqual(await store.getJobLog(a.id, 0), log);
      assert.deepEqual(await store.getJobLog('job_nope'), []);
      await assert.rejects(store.appendJobLog([{ jobId: 'job_nope', at: t, line: 'x' }]), isCode('conflict', 409));
    });

    test('concurrent calls do not leak into each other’s transactions', async () => {
      const { store } = await fresh();
      const existing = job();
      await store.insertJobs([existing]);
      const workspaces = Array.from({ length: 20 }, () => workspace());
      // Failing transactions (a duplicate job) interleaved with plain writes: on one shared session,
      // a write slipped into a failing transaction would be rolled back with it.
      const writes: Promise<void>[] = [];
      const failing: Promise<void>[] = [];
      for (const w of workspaces) {
        failing.push(store.insertJobs([job(), existing]));
        writes.push(store.insertWorkspace(w));
      }
      const loaded = store.load();
      const [written, failed] = await Promise.all([Promise.allSettled(writes), Promise.allSettled(failing), loaded]);
      assert.deepEqual(written.filter((r) => r.status === 'rejected'), []);
      for (const r of failed) assert.ok(r.status === 'rejected' && isCode('conflict', 409)(r.reason));
      assert.deepEqual(byId((await store.load()).workspaces), byId(workspaces));
      assert.equal((await store.listJobs({ limit: 500 })).length, 1);
    });

    test('close is idempotent', async () => {
      const { store } = await fresh();
      await Promise.all([store.close(), store.close()]);
      await store.close();
    });
  });
}

// ---------- PGlite: a data dir per test, copied from one migrated template (initdb is the slow part) ----------

const scratch: string[] = [];
after(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

const newDir = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'enjin-store-'));
  scratch.push(dir);
  return dir;
};

let template: Promise<string> | undefined;
/** A data dir holding a closed, migrated, empty embedded store. */
async function pgliteDataDir(): Promise<string> {
  template ??= (async () => {
    const dir = await newDir();
    const store = await openStore({ dataDir: dir });
    await store.close();
    return dir;
  })();
  const dir = await newDir();
  await cp(join(await template, 'store'), join(dir, 'store'), { recursive: true });
  return dir;
}

describeStore('pglite', async () => {
  const dataDir = await pgliteDataDir();
  return { store: await openStore({ dataDir }), reopen: () => openStore({ dataDir }) };
});

describe('embedded store: the data directory lock', () => {
  test('a second open of the same data dir is refused while the first is open, and allowed after close', async () => {
    const dataDir = await pgliteDataDir();
    const first = await openStore({ dataDir });
    try {
      assert.equal((await readFile(join(dataDir, 'store.lock'), 'utf8')).trim(), String(process.pid));
      await assert.rejects(openStore({ dataDir }), (err) => {
        isCode('data_dir_locked', 409)(err);
        assert.match((err as Error).message, new RegExp(`another enjin \\(pid ${process.pid}\\) is using ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; stop it, or start this one with --data OTHER_DIR`));
        return true;
      });
    } finally {
      await first.close();
    }
    assert.equal(existsSync(join(dataDir, 'store.lock')), false, 'close releases the lock');
    const second = await openStore({ dataDir });
    await second.close();
  });

  test('a stale lock (its pid is dead) or an unreadable one is taken over', async () => {
    const dataDir = await pgliteDataDir();
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    assert.ok(dead && dead > 0);
    for (const content of [`${dead}\n`, 'not a pid']) {
      await writeFile(join(dataDir, 'store.lock'), content);
      const store = await openStore({ dataDir });
      assert.equal((await readFile(join(dataDir, 'store.lock'), 'utf8')).trim(), String(process.pid));
      await store.close();
      assert.equal(existsSync(join(dataDir, 'store.lock')), false);
    }
  });

  test('a lock held by another live process names its pid', async () => {
    const dataDir = await pgliteDataDir();
    // pid 1 is always alive (init, or the container's first process).
    await writeFile(join(dataDir, 'store.lock'), '1\n');
    await assert.rejects(openStore({ dataDir }), (err) => {
      isCode('data_dir_locked', 409)(err);
      assert.match((err as Error).message, /\(pid 1\)/);
      return true;
    });
    assert.equal((await readFile(join(dataDir, 'store.lock'), 'utf8')).trim(), '1', 'a live lock is left alone');
  });
});

// ---------- PostgreSQL: a private server for the file, a fresh database per test ----------

let server: TestPostgres | undefined;
const serverReady = (async () => {
  server = await startPostgres();
  return server;
})();
// Start it now, in parallel with the PGlite tests; a failure surfaces in the first PostgreSQL test.
serverReady.catch(() => undefined);
after(async () => {
  await server?.stop();
});

describeStore('postgres', async () => {
  const databaseUrl = await (await serverReady).createDatabase();
  return { store: await openStore({ dataDir: '/nonexistent', databaseUrl }), reopen: () => openStore({ dataDir: '/nonexistent', databaseUrl }) };
});

describe('server store: reaching the server', () => {
  before(async () => {
    await serverReady;
  });

  test('a URL nobody listens on is store_unavailable, naming the URL without its password', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    await assert.rejects(openStore({ dataDir: '/nonexistent', databaseUrl: `postgres://enjin:s3cret@127.0.0.1:${port}/enjin` }), (err) => {
      isCode('store_unavailable', 503)(err);
      const message = (err as Error).message;
      assert.match(message, new RegExp(`postgres://enjin@127\\.0\\.0\\.1:${port}/enjin`));
      assert.doesNotMatch(message, /s3cret/);
      assert.match(message, /check that the server is running/);
      return true;
    });
  });

  test('a URL that is not postgres:// is refused before connecting', async () => {
    await assert.rejects(openStore({ dataDir: '/nonexistent', databaseUrl: 'mysql://x@127.0.0.1/db' }), isCode('invalid_request', 400));
  });
});
