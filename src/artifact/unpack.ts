// Unpacks a verified package into a directory, all or nothing: checked first, extracted beside it, renamed into place.
import { createHash, type Hash } from 'node:crypto';
import { chmod, lchown, mkdir, mkdtemp, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { Unpack, type ReadEntry } from 'tar';
import { EnjinError } from '../core/errors.ts';
import { feedTar, hasGzipMagic, invalidPackage, scanPackage, type ScannedEntry } from './inspect.ts';
import { normalizeEntryPath, normalizeMode, resolveLimits, type PackageLimits } from './rules.ts';

const KINDS: Record<string, ScannedEntry['kind']> = { File: 'file', OldFile: 'file', Directory: 'directory', SymbolicLink: 'symlink' };

function corrupt(path: string, detail: string): EnjinError {
  return new EnjinError('package_corrupt', `the package file ${path} ${detail}; delete it and fetch the version again`, { status: 500 });
}

async function sha256Of(handle: FileHandle): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of handle.createReadStream({ start: 0, autoClose: false })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function hashTap(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Verifies `tarballPath` against `expectedSha256`, applies the same checks as inspectPackage (one
 * implementation: scanPackage), then extracts into a temporary directory beside `destDir` and renames it
 * into place. Any failure removes the temporary directory, so `destDir` either appears complete or not at all.
 * All passes read the same open file. Extraction re-hashes what it reads and checks each entry against the
 * scan, so bytes that changed after the check are never put in place.
 */
export async function unpackPackage(tarballPath: string, destDir: string, expectedSha256: string, opts?: PackageLimits, owner?: Owner | null): Promise<void> {
  const limits = resolveLimits(opts);
  const dest = resolve(destDir);
  const expected = expectedSha256.toLowerCase();
  const handle = await open(tarballPath, 'r');
  try {
    const actual = await sha256Of(handle);
    if (actual !== expected) throw corrupt(tarballPath, `has sha256 ${actual}, not the expected ${expected}`);
    const head = Buffer.alloc(2);
    await handle.read(head, 0, 2, 0);
    if (!hasGzipMagic(head)) throw invalidPackage('it does not start with the gzip signature');

    const scan = await scanPackage(() => handle.createReadStream({ start: 0, autoClose: false }), limits, { keepEntries: true });

    if (await exists(dest)) {
      throw new EnjinError('unpack_target_exists', `cannot unpack into ${dest}: it already exists; remove it first`, { status: 409 });
    }
    await mkdir(dirname(dest), { recursive: true });
    const temp = await mkdtemp(join(dirname(dest), `.${basename(dest)}.unpacking-`));
    try {
      await extract(handle, temp, scan.entries, limits, tarballPath, expected);
      if (owner) {
        // Given to its app's user before it appears under its name, and private to that user: no other app reads it.
        await chownTree(temp, owner);
        await chmod(temp, 0o700);
      } else {
        // mkdtemp makes the directory private; the package root should read like any other directory in it.
        await chmod(temp, 0o755);
      }
      await rename(temp, dest);
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      if (err instanceof EnjinError) throw err;
      throw new EnjinError('unpack_failed', `could not unpack ${tarballPath} into ${dest}: ${(err as Error).message}`, { status: 500, cause: err });
    }
  } finally {
    await handle.close();
  }
}

export interface Owner {
  uid: number;
  gid: number;
}

/** Gives `dir` and everything in it to `owner` (links themselves, never what they point to). */
export async function chownTree(dir: string, owner: Owner): Promise<void> {
  await lchown(dir, owner.uid, owner.gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await chownTree(path, owner);
    else await lchown(path, owner.uid, owner.gid);
  }
}

async function extract(handle: FileHandle, temp: string, expected: ScannedEntry[], limits: Required<PackageLimits>, file: string, sha256: string): Promise<void> {
  let index = 0;
  let mismatch = false;
  const unpack = new Unpack({
    cwd: temp,
    strict: true,
    // node-tar keeps the archive's owners when run as root; a package's uid/gid mean nothing on this host.
    preserveOwner: false,
    dmode: 0o755,
    fmode: 0o644,
    filter: (_path: string, stat: unknown) => {
      const entry = stat as ReadEntry;
      const norm = normalizeEntryPath(entry.path);
      if ('path' in norm && norm.path === '' && entry.type === 'Directory') return false;
      const want = expected[index++];
      const kind = KINDS[entry.type];
      if (!want || !kind || !('path' in norm) || want.path !== norm.path || want.kind !== kind || want.size !== (entry.size ?? 0) || (kind === 'symlink' && want.linkpath !== entry.linkpath)) {
        mismatch = true;
        return false;
      }
      entry.mode = normalizeMode(kind, entry.mode);
      return true;
    },
  });
  const hash = createHash('sha256');
  const changed = (): EnjinError | null => (mismatch ? corrupt(file, 'changed while it was being unpacked') : null);
  await feedTar(handle.createReadStream({ start: 0, autoClose: false }), unpack, limits, changed, [hashTap(hash)]);
  if (mismatch || index !== expected.length || hash.digest('hex') !== sha256) throw corrupt(file, 'changed while it was being unpacked');
}
