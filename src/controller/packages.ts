// Package blobs on the controller's disk, addressed by sha256: the same bytes are stored once. Uploads stream into a
// temporary file beside them and are moved into place only once a deploy is accepted.
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

const UPLOAD_SUFFIX = '.upload';

export class PackageStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Uploads of a previous run that never finished (killed mid-upload) are garbage.
    for (const name of readdirSync(dir)) if (name.endsWith(UPLOAD_SUFFIX) || name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
  }

  path(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return join(this.dir, `${sha256}.tar.gz`);
  }

  has(sha256: string): boolean {
    return existsSync(this.path(sha256));
  }

  /** A fresh path for an upload in progress, on the same filesystem as the store so adopting it is a rename. */
  uploadPath(): string {
    return join(this.dir, `${randomBytes(12).toString('hex')}${UPLOAD_SUFFIX}`);
  }

  /** Moves a checked upload into place under its hash; if the same bytes are stored already, the upload is dropped. */
  async adopt(sha256: string, uploadPath: string): Promise<void> {
    const final = this.path(sha256);
    if (existsSync(final)) await rm(uploadPath, { force: true });
    else await rename(uploadPath, final);
  }

  /** Lists uploads in progress (tests check that a refused upload leaves none behind). */
  uploadsInProgress(): string[] {
    return readdirSync(this.dir).filter((n) => n.endsWith(UPLOAD_SUFFIX));
  }

  open(sha256: string): Readable {
    return createReadStream(this.path(sha256));
  }

  remove(sha256: string): void {
    rmSync(this.path(sha256), { force: true });
  }
}
