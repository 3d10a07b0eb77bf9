// Package blobs on the controller's disk, addressed by sha256: the same bytes are stored once.
import { createReadStream, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export class PackageStore {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  path(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return join(this.dir, `${sha256}.tar.gz`);
  }

  has(sha256: string): boolean {
    return existsSync(this.path(sha256));
  }

  async put(sha256: string, data: Buffer): Promise<void> {
    const final = this.path(sha256);
    if (existsSync(final) && statSync(final).size === data.length) return;
    const tmp = `${final}.${process.pid}.tmp`;
    await writeFile(tmp, data);
    await rename(tmp, final);
  }

  open(sha256: string): Readable {
    return createReadStream(this.path(sha256));
  }

  remove(sha256: string): void {
    rmSync(this.path(sha256), { force: true });
  }
}
