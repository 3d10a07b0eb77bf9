// Both package store backends against one set of expectations: the disk store (embedded mode) and the PostgreSQL
// store (cluster mode, on a private server), plus the PostgreSQL one's all-or-nothing writes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { DatabasePackageStore, importDiskPackages } from './database-packages.ts';
import { DiskPackageStore, type PackageStore } from './packages.ts';

const ROW = 256 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function expectations(name: string, make: () => { packages: PackageStore; dir: string }): void {
  describe(name, () => {
    test('adopts an upload, reads any range of it, streams it whole, and removes it', async () => {
      const { packages } = make();
      // Two and a half rows: ranges inside one row, across rows, and at the end.
      const bytes = randomBytes(ROW * 2 + ROW / 2);
      const id = sha(bytes);
      const upload = packages.uploadPath();
      writeFileSync(upload, bytes);
      assert.equal(await packages.has(id), false);
      assert.equal(await packages.size(id), null);
      assert.equal(await packages.read(id, 0, 10), null);
      await packages.adopt(id, upload);
      assert.equal(existsSync(upload), false, 'the upload file is gone once adopted');
      assert.deepEqual(packages.uploadsInProgress(), []);
      assert.equal(await packages.has(id), true);
      assert.equal(await packages.size(id), bytes.length);
      for (const [offset, length] of [[0, ROW], [ROW, ROW], [10, 100], [ROW - 5, 10], [ROW - 5, ROW * 2], [bytes.length - 7, ROW], [bytes.length, ROW]]) {
        const got = await packages.read(id, offset, length);
        assert.ok(got, `read ${offset}+${length}`);
        assert.ok(got.equals(bytes.subarray(offset, offset + length)), `bytes ${offset}+${length}`);
      }
      const streamed = await buffer(packages.open(id));
      assert.ok(streamed.equals(bytes), 'the stream is the package');
      await packages.remove(id);
      assert.equal(await packages.has(id), false);
      assert.equal(await packages.read(id, 0, 10), null);
    });

    test('the same bytes are stored once: a second upload of them is dropped', async () => {
      const { packages } = make();
      const bytes = randomBytes(1000);
      const id = sha(bytes);
      for (let i = 0; i < 2; i++) {
        const upload = packages.uploadPath();
        writeFileSync(upload, bytes);
        await packages.adopt(id, upload);
        assert.equal(existsSync(upload), false);
      }
      assert.ok((await packages.read(id, 0, 1000))?.equals(bytes));
      await packages.remove(id);
    });

    test('refuses a name that is not a sha256', async () => {
      const { packages } = make();
      await assert.rejects(packages.has('../../etc/passwd'), (e: Error & { code?: string }) => e.code === 'invalid_request');
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'enjin-packages-'));
  dirs.push(d);
  return d;
};

expectations('disk package store', () => {
  const dir = tempDir();
  return { packages: new DiskPackageStore(join(dir, 'packages')), dir };
});

describe('PostgreSQL package store', () => {
  let pg: TestPostgres;
  let store: Store;
  const shared: { dir?: string } = {};

  before(async () => {
    pg = await startPostgres();
    shared.dir = tempDir();
    store = await openStore({ dataDir: shared.dir, databaseUrl: pg.url });
  });
  after(async () => {
    await store?.close();
    await pg?.stop();
  });

  expectations('backend', () => ({ packages: new DatabasePackageStore(store.packageBlobs!, join(shared.dir!, 'uploads')), dir: shared.dir! }));

  test('a package is stored whole or not at all', async () => {
    const blobs = store.packageBlobs!;
    const id = sha(randomBytes(32));
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield randomBytes(ROW);
      yield randomBytes(ROW);
      throw new Error('the upload file went away');
    }
    await assert.rejects(blobs.put(id, ROW * 3, ROW, failing()), /went away/);
    assert.equal(await blobs.get(id), null, 'no package row');
    assert.deepEqual(await blobs.readChunks(id, 0, 10), [], 'no chunk rows');

    async function* short(): AsyncGenerator<Uint8Array> {
      yield randomBytes(ROW);
    }
    await assert.rejects(blobs.put(id, ROW * 2, ROW, short()), /not the declared/);
    assert.equal(await blobs.get(id), null);
    async function* misfit(): AsyncGenerator<Uint8Array> {
      yield randomBytes(100);
      yield randomBytes(ROW);
    }
    await assert.rejects(blobs.put(id, ROW + 100, ROW, misfit()), /does not fit/);
    assert.equal(await blobs.get(id), null);
  });

  test('two controllers storing the same package at once store it once', async () => {
    const other = await openStore({ dataDir: shared.dir!, databaseUrl: pg.url });
    try {
      const bytes = randomBytes(ROW * 3);
      const id = sha(bytes);
      const a = new DatabasePackageStore(store.packageBlobs!, join(shared.dir!, 'uploads'));
      const b = new DatabasePackageStore(other.packageBlobs!, join(shared.dir!, 'uploads-b'));
      const ua = a.uploadPath();
      const ub = b.uploadPath();
      writeFileSync(ua, bytes);
      writeFileSync(ub, bytes);
      await Promise.all([a.adopt(id, ua), b.adopt(id, ub)]);
      assert.equal(existsSync(ua) || existsSync(ub), false);
      assert.deepEqual(await store.packageBlobs!.get(id), { sha256: id, size: bytes.length, chunkSize: ROW, chunks: 3 });
      assert.equal((await store.packageBlobs!.readChunks(id, 0, 10)).length, 3);
      assert.ok((await b.read(id, ROW - 1, ROW + 2))?.equals(bytes.subarray(ROW - 1, ROW * 2 + 1)));
    } finally {
      await other.close();
    }
  });

  test('packages an earlier controller kept on disk move into the store; a file that does not match its name stays', async () => {
    const disk = join(tempDir(), 'packages');
    mkdirSync(disk);
    const good = randomBytes(ROW + 10);
    const bad = randomBytes(100);
    const badName = `${sha(randomBytes(8))}.tar.gz`;
    writeFileSync(join(disk, `${sha(good)}.tar.gz`), good);
    writeFileSync(join(disk, badName), bad);
    writeFileSync(join(disk, 'notes.txt'), 'not a package');
    const packages = new DatabasePackageStore(store.packageBlobs!, join(shared.dir!, 'uploads'));
    assert.equal(await importDiskPackages(disk, packages), 1);
    assert.ok((await packages.read(sha(good), 0, ROW + 10))?.equals(good));
    assert.equal(existsSync(join(disk, `${sha(good)}.tar.gz`)), false, 'an imported file is removed');
    assert.equal(existsSync(join(disk, badName)), true);
    assert.equal(await importDiskPackages(join(shared.dir!, 'none'), packages), 0, 'no directory: nothing to import');
  });
});
