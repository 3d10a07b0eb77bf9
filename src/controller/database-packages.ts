// Packages in the PostgreSQL store, so any controller can serve any package: an upload is read from its spool file
// into chunk rows in one transaction, and reads fetch only the rows a byte range covers.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { componentLogger } from '../log/logger.ts';
import { PACKAGE_CHUNK_MAX_BYTES } from '../core/messages.ts';
import type { PackageBlobs, StoredPackage } from '../store/store.ts';
import { checkSha256, UploadSpool, type PackageStore } from './packages.ts';

const log = componentLogger('packages');

/** Rows of the bus chunk size: an agent's aligned chunk request reads exactly one row. */
const ROW_BYTES = PACKAGE_CHUNK_MAX_BYTES;
/** Package sizes remembered (a package never changes under its hash), so a chunk request costs one query, not two. */
const KNOWN_MAX = 256;

export class DatabasePackageStore implements PackageStore {
  readonly kind = 'store';
  private readonly spool: UploadSpool;
  private readonly known = new Map<string, StoredPackage>();

  /** spoolDir: where uploads stream to before they are stored (this controller's data directory) */
  constructor(private readonly blobs: PackageBlobs, spoolDir: string) {
    this.spool = new UploadSpool(spoolDir);
  }

  uploadPath(): string {
    return this.spool.uploadPath();
  }

  uploadsInProgress(): string[] {
    return this.spool.uploadsInProgress();
  }

  async adopt(sha256: string, uploadPath: string): Promise<void> {
    checkSha256(sha256);
    if (!(await this.blobs.get(sha256))) {
      const { size } = await stat(uploadPath);
      await this.blobs.put(sha256, size, ROW_BYTES, readInRows(uploadPath, ROW_BYTES));
    }
    // Only once the bytes are stored: on a failure the file stays for the caller (the upload route removes it, a
    // package imported from disk is kept for the next try).
    await rm(uploadPath, { force: true });
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.info(sha256)) !== null;
  }

  async size(sha256: string): Promise<number | null> {
    return (await this.info(sha256))?.size ?? null;
  }

  async read(sha256: string, offset: number, length: number): Promise<Buffer | null> {
    const info = await this.info(sha256);
    if (!info) return null;
    const end = Math.min(offset + length, info.size);
    if (offset >= end) return Buffer.alloc(0);
    const first = Math.floor(offset / info.chunkSize);
    const last = Math.floor((end - 1) / info.chunkSize);
    const rows = await this.blobs.readChunks(sha256, first, last);
    if (rows.length !== last - first + 1) {
      // Removed meanwhile (its project destroyed): forget it, so the next request answers not found at once.
      this.known.delete(sha256);
      return null;
    }
    const joined = rows.length === 1 ? rows[0] : Buffer.concat(rows);
    const from = offset - first * info.chunkSize;
    return joined.subarray(from, from + (end - offset));
  }

  open(sha256: string): Readable {
    const blobs = this.blobs;
    const info = (): Promise<StoredPackage | null> => this.info(sha256);
    return Readable.from((async function* () {
      const pkg = await info();
      if (!pkg) throw new Error(`package ${sha256} is not in the store`);
      // One row at a time: a 500 MB package never sits in memory.
      for (let i = 0; i < pkg.chunks; i++) {
        const [row] = await blobs.readChunks(sha256, i, i);
        if (!row) throw new Error(`package ${sha256} lost chunk ${i} while it was being read`);
        yield row;
      }
    })());
  }

  async remove(sha256: string): Promise<void> {
    this.known.delete(checkSha256(sha256));
    await this.blobs.delete(sha256);
  }

  private async info(sha256: string): Promise<StoredPackage | null> {
    checkSha256(sha256);
    const cached = this.known.get(sha256);
    if (cached) return cached;
    const found = await this.blobs.get(sha256);
    if (!found) return null;
    if (this.known.size >= KNOWN_MAX) this.known.delete(this.known.keys().next().value!);
    this.known.set(sha256, found);
    return found;
  }
}

/**
 * Packages a controller kept on its disk before they moved into PostgreSQL (`DATA/packages/SHA256.tar.gz`): each one
 * whose bytes match its name is stored and its file removed, so versions deployed before still reach every node. A
 * file that does not match is left where it is, and said so. Returns how many were imported.
 */
export async function importDiskPackages(dir: string, packages: DatabasePackageStore): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let imported = 0;
  for (const name of names) {
    const m = /^([0-9a-f]{64})\.tar\.gz$/.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    if (hash.digest('hex') !== m[1]) {
      log.error({ path }, 'a package file on disk does not match its name; it was not imported into the store (remove it once no version needs it)');
      continue;
    }
    await packages.adopt(m[1], path);
    imported++;
  }
  if (imported) log.info({ imported, dir }, 'packages kept on this controller\'s disk were moved into the store');
  return imported;
}

/** The file in rows of exactly `rowBytes` (the last one shorter), one row in memory at a time. */
async function* readInRows(path: string, rowBytes: number): AsyncGenerator<Buffer> {
  const file = await open(path, 'r');
  try {
    for (;;) {
      const row = Buffer.alloc(rowBytes);
      let filled = 0;
      while (filled < rowBytes) {
        const { bytesRead } = await file.read(row, filled, rowBytes - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) return;
      yield filled === rowBytes ? row : row.subarray(0, filled);
      if (filled < rowBytes) return;
    }
  } finally {
    await file.close();
  }
}
