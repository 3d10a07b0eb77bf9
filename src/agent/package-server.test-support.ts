// For agent tests: packages served over the bus the way controllers serve them (the real chunk responder over a real
// disk package store), with a count of the fetches each package got.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import type { Bus, Subscription } from '../bus/bus.ts';
import type { VersionSpec } from '../core/messages.ts';
import { DiskPackageStore } from '../controller/packages.ts';
import { servePackageChunks } from '../sync/package-chunks.ts';

/** The disk store, counting fetches (reads at offset 0) per sha256. */
class CountingPackageStore extends DiskPackageStore {
  readonly fetches = new Map<string, number>();

  override async read(sha256: string, offset: number, length: number): Promise<Buffer | null> {
    if (offset === 0) this.fetches.set(sha256, (this.fetches.get(sha256) ?? 0) + 1);
    return super.read(sha256, offset, length);
  }
}

export interface PackageServer {
  /** a version of the package holding one README */
  version(versionId: string, prepare?: string[]): VersionSpec;
  /** builds a package of `files` and stores it; its sha256 and size */
  add(name: string, files: Record<string, string>): Promise<{ sha256: string; size: number }>;
  /** stores a package of `files` under a name that is not its sha256: what a damaged store serves */
  addMislabelled(name: string, sha256: string, files: Record<string, string>): Promise<{ size: number }>;
  /** answers package chunk requests on `bus` */
  serve(bus: Bus): Subscription;
  /** how many times the package was fetched */
  fetches(sha256: string): number;
  close(): void;
}

export async function startPackageServer(dir: string): Promise<PackageServer> {
  const store = new CountingPackageStore(join(dir, 'served-packages'));
  const served: Subscription[] = [];
  const add = async (name: string, files: Record<string, string>, storeAs?: string): Promise<{ sha256: string; size: number }> => {
    const src = join(dir, 'pkg-src', name);
    mkdirSync(src, { recursive: true });
    for (const [f, body] of Object.entries(files)) writeFileSync(join(src, f), body);
    const file = join(dir, 'pkg-src', `${name}.tar.gz`);
    await tar.c({ gzip: true, cwd: src, file, portable: true }, Object.keys(files));
    const bytes = readFileSync(file);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await store.adopt(storeAs ?? sha256, file);
    return { sha256, size: bytes.length };
  };
  const readme = await add('readme', { README: 'a test package\n' });
  return {
    version: (versionId, prepare = []) => ({ versionId, project: 'test', sha256: readme.sha256, size: readme.size, prepare, env: {} }),
    add: (name, files) => add(name, files),
    addMislabelled: async (name, sha256, files) => ({ size: (await add(name, files, sha256)).size }),
    serve: (bus) => {
      const s = servePackageChunks(bus, store);
      served.push(s);
      return s;
    },
    fetches: (sha256) => store.fetches.get(sha256) ?? 0,
    close: () => {
      for (const s of served.splice(0)) s.unsubscribe();
    },
  };
}
