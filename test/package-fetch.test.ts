// Packages over the bus end to end: a controller on a PostgreSQL store and an agent on one MemoryBus deploy an app;
// a damaged package is refused; a controller that stops answering mid-download is replaced by another; a 50 MB
// package is fetched a bounded number of bounded chunks at a time.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { Subscription } from '../src/bus/bus.ts';
import { MemoryBus } from '../src/bus/memory.ts';
import type { EnjinError } from '../src/core/errors.ts';
import { PACKAGE_CHUNK_MAX_BYTES, subjects, type AgentRequest, type VersionSpec } from '../src/core/messages.ts';
import { Agent } from '../src/agent/agent.ts';
import { BusPackageSource } from '../src/sync/package-fetch.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { DiskPackageStore } from '../src/controller/packages.ts';
import { servePackageChunks } from '../src/sync/package-chunks.ts';
import { packDirectory } from '../src/artifact/pack.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import { startPostgres, type TestPostgres } from './support/postgres.ts';
import { cleanup, eventually, tempDir } from './support/enjin.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const SERVER_JS = `require('node:http').createServer((req, res) => res.end('hi from ' + process.pid)).listen(Number(process.env.PORT));
process.on('SIGTERM', () => process.exit(0));
`;

async function packApp(files: Record<string, string | Buffer>): Promise<Buffer> {
  const app = tempDir('pkg-app');
  try {
    for (const [name, body] of Object.entries(files)) writeFileSync(join(app, name), body);
    return (await packDirectory(app)).tarball;
  } finally {
    cleanup(app);
  }
}

describe('a controller on PostgreSQL and an agent on one bus', () => {
  let dir: string;
  let postgres: TestPostgres;
  let store: Store;
  let bus: MemoryBus;
  let controller: Controller;
  let api: Awaited<ReturnType<typeof buildApi>>;
  let agent: Agent;
  let base: string;
  let token: string;

  before(async () => {
    dir = tempDir('pkg-e2e');
    // As root, apps run as another user, who must pass through here to their version directories.
    chmodSync(dir, 0o711);
    postgres = await startPostgres();
    store = await openStore({ dataDir: join(dir, 'controller'), databaseUrl: postgres.url });
    bus = new MemoryBus();
    controller = await Controller.start({ store, bus, dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 60_000 });
    api = await buildApi(controller);
    await api.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    token = await controller.auth.create('test');
    agent = new Agent({ nodeId: 'pkgnode', name: 'pkgnode', bus, dataDir: join(dir, 'agent'), heartbeatMs: 500, settleMs: 200, portRange: [38000, 38499] });
    await agent.start();
    await eventually(() => controller.state.nodes.get('pkgnode')?.status === 'ready', 'the node to be ready', 60_000);
  });

  after(async () => {
    await agent?.stop({ stopInstances: true }).catch(() => undefined);
    await api?.close();
    await controller?.stop();
    await store?.close();
    await postgres?.stop();
    cleanup(dir);
  });

  const rpc = (req: AgentRequest) => bus.request(subjects.agentRpc('pkgnode'), req, { timeoutMs: 120_000 });

  let deployed: { sha256: string; size: number; bytes: Buffer };

  test('a deploy stores the package in PostgreSQL and the agent fetches it over the bus', async () => {
    const bytes = await packApp({ 'enjin.yaml': 'project: shop\nservices:\n  web:\n    command: node server.js\n', 'server.js': SERVER_JS });
    const res = await fetch(`${base}/v1/projects/shop/deploys`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' }, body: new Blob([new Uint8Array(bytes)]) });
    const body = (await res.json()) as { job: { id: string }; version: { id: string } };
    assert.equal(res.status, 202, JSON.stringify(body));
    const job = await controller.jobs.wait(body.job.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(await controller.jobs.getTree(job.id, true)));
    deployed = { sha256: sha(bytes), size: bytes.length, bytes };
    assert.ok(await store.packageBlobs!.get(deployed.sha256), 'the package is in the store');
    assert.deepEqual(readdirOrEmpty(join(dir, 'controller', 'packages')), [], 'nothing is kept on the controller disk');
    const running = [...controller.state.instances.values()].filter((i) => i.current?.state === 'running');
    assert.equal(running.length, 1);
    assert.match(await (await fetch(`http://127.0.0.1:${running[0].current!.port}/`)).text(), /^hi from \d+/);
    assert.ok(existsSync(join(dir, 'agent', 'versions', body.version.id, 'server.js')), 'unpacked where the agent keeps versions');
    // People and tools can still download a package over HTTP with an admin token.
    const download = await fetch(`${base}/v1/versions/${body.version.id}/package`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(download.status, 200);
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(bytes));
  });

  test('a package damaged in the store is refused, and nothing is unpacked', async () => {
    // Same length, other bytes: only the sha256 can tell.
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      const r = await client.query("update package_chunks set data = overlay(data placing '\\xdeadbeef'::bytea from 100) where sha256 = $1 and idx = 0", [deployed.sha256]);
      assert.equal(r.rowCount, 1);
    } finally {
      await client.end();
    }
    const version: VersionSpec = { versionId: 'ver_damaged', project: 'shop', sha256: deployed.sha256, size: deployed.size, prepare: [], env: {} };
    await assert.rejects(rpc({ op: 'prepare', version }), (e: EnjinError) => e.code === 'package_corrupt' && /refused/.test(e.message));
    assert.equal(existsSync(join(dir, 'agent', 'versions', 'ver_damaged')), false);
    assert.deepEqual(readdirOrEmpty(join(dir, 'agent', 'versions')).filter((n) => n.startsWith('.download-')), [], 'the download file is removed');
  });
});

function readdirOrEmpty(path: string): string[] {
  return existsSync(path) ? readdirSync(path) : [];
}

/** A disk package store that counts and watches its reads, and can hang (a controller whose disk stalls). */
class WatchedPackageStore extends DiskPackageStore {
  reads = 0;
  concurrent = 0;
  maxConcurrent = 0;
  maxLength = 0;
  /** after this many reads, every read hangs and onHang runs once */
  hangAfter = Infinity;
  onHang: () => void = () => undefined;

  override async read(sha256: string, offset: number, length: number): Promise<Buffer | null> {
    if (this.reads >= this.hangAfter) {
      const hook = this.onHang;
      this.onHang = () => undefined;
      hook();
      return new Promise(() => undefined);
    }
    this.reads++;
    this.maxLength = Math.max(this.maxLength, length);
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      return await super.read(sha256, offset, length);
    } finally {
      this.concurrent--;
    }
  }
}

describe('fetching from whichever controller answers', () => {
  let dir: string;
  const agents: Agent[] = [];
  before(() => {
    dir = tempDir('pkg-fetch');
    chmodSync(dir, 0o711);
  });
  after(async () => {
    for (const a of agents) await a.stop({ stopInstances: true }).catch(() => undefined);
    cleanup(dir);
  });

  const storeOf = async (name: string, bytes: Buffer): Promise<WatchedPackageStore> => {
    const store = new WatchedPackageStore(join(dir, name));
    const upload = store.uploadPath();
    writeFileSync(upload, bytes);
    await store.adopt(sha(bytes), upload);
    return store;
  };

  test('a controller that stops answering mid-download is replaced by another, and the package still checks', async () => {
    // Incompressible, so the package spans several chunks.
    const bytes = await packApp({ 'enjin.yaml': 'project: big\nservices: {}\n', 'blob.bin': randomBytes(PACKAGE_CHUNK_MAX_BYTES * 5) });
    const first = await storeOf('first', bytes);
    const second = await storeOf('second', bytes);
    const bus = new MemoryBus();
    let firstServes: Subscription | null = servePackageChunks(bus, first);
    first.hangAfter = 2;
    // The first controller hangs on its third read and leaves; the second comes up.
    first.onHang = () => {
      firstServes?.unsubscribe();
      firstServes = null;
      servePackageChunks(bus, second);
    };
    const agent = new Agent({ nodeId: 'fetcher', name: 'fetcher', bus, dataDir: join(dir, 'agent'), heartbeatMs: 60_000, portRange: [38500, 38999], packageFetch: { chunkTimeoutMs: 500, inFlight: 2, retryDelayMs: 50 } });
    agents.push(agent);
    await agent.start();
    const version: VersionSpec = { versionId: 'ver_big', project: 'big', sha256: sha(bytes), size: bytes.length, prepare: [], env: {} };
    await bus.request(subjects.agentRpc('fetcher'), { op: 'prepare', version }, { timeoutMs: 120_000 });
    assert.equal(first.reads, 2, 'the first controller served two chunks');
    assert.ok(second.reads >= 4, `the second served the rest (${second.reads})`);
    assert.ok(readFileSync(join(dir, 'agent', 'versions', 'ver_big', 'blob.bin')).length === PACKAGE_CHUNK_MAX_BYTES * 5, 'unpacked whole');
  });

  test('a 50 MB package is fetched a few bounded chunks at a time, never held in memory', async () => {
    const size = 50 * 1024 * 1024;
    const bytes = randomBytes(size);
    const id = sha(bytes);
    const store = await storeOf('large', bytes);
    const bus = new MemoryBus();
    servePackageChunks(bus, store);
    const to = join(dir, 'large.download');
    const source = new BusPackageSource(bus, { inFlight: 4 });
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }, 20);
    try {
      await source.fetch({ versionId: 'ver_large', sha256: id, size }, to);
    } finally {
      clearInterval(sampler);
    }
    assert.equal(store.maxLength, PACKAGE_CHUNK_MAX_BYTES, 'no request asked for more than one chunk');
    assert.ok(store.maxConcurrent <= 4, `at most 4 chunks in flight (${store.maxConcurrent})`);
    assert.equal(store.reads, size / PACKAGE_CHUNK_MAX_BYTES, 'each chunk asked for once');
    assert.equal(sha(readFileSync(to)), id);
    // Loose, as garbage collection makes RSS noisy (5 to 20 MB seen): holding the package would add 50 MB at least.
    const grown = (rssPeak - rssBefore) / 1024 ** 2;
    assert.ok(grown < 50, `RSS grew by ${grown.toFixed(1)} MB while fetching`);
  });
});

describe('what an agent refuses from the bus', () => {
  let dir: string;
  before(() => {
    dir = tempDir('pkg-refuse');
  });
  after(() => cleanup(dir));

  const pkg = { versionId: 'ver_h', sha256: 'b'.repeat(64), size: 1000 };

  test('a reply of another size, offset or length is refused at once, not retried', async () => {
    const bus = new MemoryBus();
    let answers = 0;
    const lies: Array<(r: { offset: number; length: number }) => unknown> = [
      (r) => ({ sha256: pkg.sha256, offset: r.offset, size: 5000, data: Buffer.alloc(r.length).toString('base64') }),
      (r) => ({ sha256: pkg.sha256, offset: r.offset + 1, size: pkg.size, data: Buffer.alloc(r.length).toString('base64') }),
      (r) => ({ sha256: pkg.sha256, offset: r.offset, size: pkg.size, data: Buffer.alloc(r.length * 4).toString('base64') }),
      (r) => ({ sha256: pkg.sha256, offset: r.offset, size: pkg.size, data: Buffer.alloc(r.length - 1).toString('base64') }),
    ];
    for (const [i, lie] of lies.entries()) {
      const sub = bus.handle(subjects.packageChunk, async (data) => {
        answers++;
        return lie(data as { offset: number; length: number });
      });
      const to = join(dir, `lie-${i}`);
      await assert.rejects(new BusPackageSource(bus, { inFlight: 1 }).fetch(pkg, to), (e: EnjinError) => e.code === 'package_corrupt');
      sub.unsubscribe();
    }
    assert.equal(answers, lies.length, 'one request each: a lie is not asked again');
  });

  test('with no controller answering, the fetch fails after its tries with a message saying what to check', async () => {
    const bus = new MemoryBus();
    await assert.rejects(new BusPackageSource(bus, { attempts: 3, retryDelayMs: 10 }).fetch(pkg, join(dir, 'nobody')), (e: EnjinError) => e.code === 'version_fetch_failed' && /3 tries/.test(e.message) && /controller is running/.test(e.message));
  });
});
