// What a node keeps of its prepared versions for a controller rebuilding its store from the nodes: the markers that
// say what was prepared, the verified packages kept beside them, and the manifests of the unpacked versions.
import { constants } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EnjinError, notFound } from '../core/errors.ts';
import { PACKAGE_CHUNK_MAX_BYTES, type KeptVersion, type VersionSpec } from '../core/messages.ts';
import { formatBytes, ROOT_FILE_MAX } from '../artifact/rules.ts';
import type { PackageReader } from '../sync/package-chunks.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('agent');

/** The files a version's manifest may be, in the order they are looked for (the order the controller reads a package in). */
export const MANIFEST_FILES = ['enjin.yaml', 'enjin.yml', 'Procfile'] as const;

const MARKER_SUFFIX = '.prepared';

/** The marker a prepared version leaves: what was prepared, so a node can tell it to a controller that lost its store. */
export interface PreparedMarker {
  sha256: string;
  at: string;
  /** null in a marker an older agent wrote (it kept only sha256 and at) */
  project: string | null;
  size: number | null;
  number: number | null;
}

export function markerFor(version: VersionSpec, at = new Date()): PreparedMarker {
  const number = Number.isSafeInteger(version.number) ? (version.number as number) : null;
  return { sha256: version.sha256, at: at.toISOString(), project: version.project, size: version.size, number };
}

/** null when the marker is not one an agent wrote (never trusted as a version the node holds). */
export function parseMarker(text: string): PreparedMarker | null {
  let m: Partial<Record<keyof PreparedMarker, unknown>>;
  try {
    m = JSON.parse(text) as typeof m;
  } catch {
    return null;
  }
  if (!m || typeof m !== 'object' || typeof m.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(m.sha256)) return null;
  return {
    sha256: m.sha256.toLowerCase(),
    at: typeof m.at === 'string' ? m.at : '',
    project: typeof m.project === 'string' ? m.project : null,
    size: Number.isSafeInteger(m.size) && (m.size as number) >= 0 ? (m.size as number) : null,
    number: Number.isSafeInteger(m.number) ? (m.number as number) : null,
  };
}

/** The verified package of a version, kept beside it: a dot name, so gc and listings never take it for a version. */
export function packageFileName(versionId: string): string {
  return `.package-${versionId}.tar.gz`;
}

/**
 * The versions prepared in `dir` (a marker and the unpacked directory), from their markers. `isId` tells file names
 * that are version ids from anything else that may lie there.
 */
export async function listKept(dir: string, isId: (id: string) => boolean): Promise<KeptVersion[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const kept: KeptVersion[] = [];
  for (const name of names) {
    if (!name.endsWith(MARKER_SUFFIX)) continue;
    const versionId = name.slice(0, -MARKER_SUFFIX.length);
    if (!isId(versionId)) continue;
    const version = await keptVersion(dir, versionId);
    if (version) kept.push(version);
  }
  return kept.sort((a, b) => a.versionId.localeCompare(b.versionId));
}

async function keptVersion(dir: string, versionId: string): Promise<KeptVersion | null> {
  let text: string;
  try {
    if (!(await stat(join(dir, versionId))).isDirectory()) return null;
    text = await readFile(join(dir, `${versionId}${MARKER_SUFFIX}`), 'utf8');
  } catch (err) {
    // gc or a re-prepare took it away meanwhile: it is not held any more
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const marker = parseMarker(text);
  if (!marker) {
    log.warn({ versionId, dir }, 'a prepared marker is not one an agent wrote; the version is left out of the inventory');
    return null;
  }
  const packageKept = marker.size !== null && (await fileSize(join(dir, packageFileName(versionId)))) === marker.size;
  return {
    versionId,
    project: marker.project,
    sha256: marker.sha256,
    // as KeptVersion says: the size travels with a package that can be fetched
    size: packageKept ? marker.size : null,
    number: marker.number,
    preparedAt: marker.at,
    packageKept,
  };
}

async function fileSize(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * The packages this node kept, by sha256, for servePackageChunks: only a package of a version listed as kept (its
 * marker's sha256, the file's size as the marker says) is served, never any other file of the directory.
 */
export class KeptPackages implements PackageReader {
  /** sha256 → the kept file last found for it; checked again at every read, rebuilt on a miss */
  private index = new Map<string, string>();

  constructor(private readonly dir: string, private readonly list: () => Promise<KeptVersion[]>) {}

  async size(sha256: string): Promise<number | null> {
    const path = await this.find(sha256);
    return path ? fileSize(path) : null;
  }

  async read(sha256: string, offset: number, length: number): Promise<Buffer | null> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1) return null;
    const path = await this.find(sha256);
    if (!path) return null;
    let file;
    try {
      file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const { size } = await file.stat();
      const n = Math.max(0, Math.min(length, PACKAGE_CHUNK_MAX_BYTES, size - offset));
      const buf = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await file.read(buf, got, n - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await file.close();
    }
  }

  private async find(sha256: string): Promise<string | null> {
    const known = this.index.get(sha256);
    if (known && (await fileSize(known)) !== null) return known;
    this.index = new Map();
    for (const v of await this.list()) {
      if (v.packageKept && !this.index.has(v.sha256)) this.index.set(v.sha256, join(this.dir, packageFileName(v.versionId)));
    }
    return this.index.get(sha256) ?? null;
  }
}

/**
 * The manifest of a version unpacked in `versionDir`: the first of MANIFEST_FILES there. The directory belongs to the
 * app, which may have put anything there since: a link is never followed, only a regular file with one name (not a
 * hard link to a file elsewhere) of at most ROOT_FILE_MAX is read, and a FIFO never blocks the open.
 */
export async function readVersionManifest(versionDir: string, versionId: string): Promise<{ file: string; text: string }> {
  for (const file of MANIFEST_FILES) {
    const path = join(versionDir, file);
    let handle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      if (code === 'ENOTDIR') break;
      if (code === 'ELOOP') throw unsafeManifest(versionId, file, 'is a symbolic link');
      throw err;
    }
    try {
      const s = await handle.stat();
      if (!s.isFile()) throw unsafeManifest(versionId, file, 'is not a regular file');
      if (s.nlink !== 1) throw unsafeManifest(versionId, file, `has ${s.nlink} hard links (a package never makes one)`);
      if (s.size > ROOT_FILE_MAX) {
        throw new EnjinError('manifest_too_large', `${file} of version ${versionId} on this node is ${formatBytes(s.size)} (${s.size} bytes); a manifest may be at most ${formatBytes(ROOT_FILE_MAX)}, so it is not read`, { status: 413 });
      }
      // Read up to one byte past the limit: a file that grew since fstat is refused, not cut.
      const buf = Buffer.alloc(ROOT_FILE_MAX + 1);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got > ROOT_FILE_MAX) throw new EnjinError('manifest_too_large', `${file} of version ${versionId} on this node grew past ${formatBytes(ROOT_FILE_MAX)} while it was read; it is not read`, { status: 413 });
      return { file, text: buf.subarray(0, got).toString('utf8') };
    } finally {
      await handle.close();
    }
  }
  throw notFound(`a manifest (${MANIFEST_FILES.join(', ')}) of version ${versionId} on this node`, 'the version is not unpacked here, or its files were removed; fetch its package from a node that kept it');
}

function unsafeManifest(versionId: string, file: string, what: string): EnjinError {
  return new EnjinError('package_unsafe', `${file} of version ${versionId} on this node ${what}, so it is not read: the version's files were changed after it was unpacked; take its manifest from another node or from its package`, { status: 422 });
}
