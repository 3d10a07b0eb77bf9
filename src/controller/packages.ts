// Package blobs, addressed by sha256 so the same bytes are stored once: one interface, two backends. On disk beside the
// embedded store (PGlite keeps its data in a WebAssembly heap: no place for 500 MB blobs), in PostgreSQL when the store
// is a server, so every controller can serve every package. Uploads stream to a file on disk first either way.
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { checkSha256 } from '../sync/package-chunks.ts';
export { checkSha256 };

const UPLOAD_SUFFIX = '.upload';

export interface PackageStore {
  /** 'disk': this controller's data directory; 'store': the PostgreSQL store */
  readonly kind: 'disk' | 'store';
  /** A fresh path for an upload in progress, on the same filesystem as a disk store so adopting it is a rename. */
  uploadPath(): string;
  /** uploads in progress (tests check that a refused upload leaves none behind) */
  uploadsInProgress(): string[];
  /**
   * Takes a checked upload under its hash and removes the upload file; if the same bytes are stored already, drops it.
   * On a failure the file is left for the caller.
   */
  adopt(sha256: string, uploadPath: string): Promise<void>;
  has(sha256: string): Promise<boolean>;
  /** the stored package's size in bytes, null when it is not stored */
  size(sha256: string): Promise<number | null>;
  /** `length` bytes from `offset` (fewer at the end); null when the package is not stored */
  read(sha256: string, offset: number, length: number): Promise<Buffer | null>;
  /** the whole package as a stream (the HTTP download) */
  open(sha256: string): Readable;
  remove(sha256: string): Promise<void>;
}

/** Where uploads stream to before they are adopted; what a previous run left half-received is garbage. */
export class UploadSpool {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Uploads of a previous run that never finished (killed mid-upload) are garbage.
    for (const name of readdirSync(dir)) if (name.endsWith(UPLOAD_SUFFIX) || name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
  }

  uploadPath(): string {
    return join(this.dir, `${randomBytes(12).toString('hex')}${UPLOAD_SUFFIX}`);
  }

  uploadsInProgress(): string[] {
    return readdirSync(this.dir).filter((n) => n.endsWith(UPLOAD_SUFFIX));
  }
}

/** Packages as files in the controller's data directory (the embedded store). */
export class DiskPackageStore implements PackageStore {
  readonly kind = 'disk';
  private readonly spool: UploadSpool;

  constructor(private readonly dir: string) {
    this.spool = new UploadSpool(dir);
  }

  path(sha256: string): string {
    return join(this.dir, `${checkSha256(sha256)}.tar.gz`);
  }

  uploadPath(): string {
    return this.spool.uploadPath();
  }

  uploadsInProgress(): string[] {
    return this.spool.uploadsInProgress();
  }

  async adopt(sha256: string, uploadPath: string): Promise<void> {
    const final = this.path(sha256);
    if (existsSync(final)) await rm(uploadPath, { force: true });
    else await rename(uploadPath, final);
  }

  async has(sha256: string): Promise<boolean> {
    return existsSync(this.path(sha256));
  }

  async size(sha256: string): Promise<number | null> {
    const handle = await open(this.path(sha256), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (!handle) return null;
    try {
      return (await handle.stat()).size;
    } finally {
      await handle.close();
    }
  }

  async read(sha256: string, offset: number, length: number): Promise<Buffer | null> {
    const handle = await open(this.path(sha256), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (!handle) return null;
    try {
      const buffer = Buffer.alloc(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return buffer.subarray(0, filled);
    } finally {
      await handle.close();
    }
  }

  open(sha256: string): Readable {
    return createReadStream(this.path(sha256));
  }

  async remove(sha256: string): Promise<void> {
    rmSync(this.path(sha256), { force: true });
  }
}
