// Reads a package (tar.gz) in streaming passes without writing anything, and rejects it whole if any entry is unsafe.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { EnjinError } from '../core/errors.ts';
import {
  foldPath,
  formatBytes,
  normalizeEntryPath,
  ProblemList,
  resolveLimits,
  ROOT_FILE_MAX,
  streamCap,
  symlinkProblem,
  tooLarge,
  type EntryKind,
  type PackageLimits,
} from './rules.ts';

export interface ScannedEntry {
  /** normalized: no leading "./", no trailing "/" */
  path: string;
  kind: EntryKind;
  size: number;
  linkpath?: string;
}

export interface PackageScan {
  /** in archive order, without the root directory entry; empty unless asked for (keepEntries) */
  entries: ScannedEntry[];
  /** regular files and symlinks */
  files: number;
  /** sum of regular file sizes */
  unpackedSize: number;
  rootFiles: Map<string, Buffer>;
  /** manifests (enjin.yaml, Procfile, …) at the root too large to read, with their sizes */
  oversizedRootFiles: Map<string, number>;
  /** other always-captured root files too large to read (a big package-lock.json): builders only need to know they are there */
  presentRootFiles: Set<string>;
}

export interface PackageInfo {
  sha256: string;
  files: number;
  unpackedSize: number;
  /** the text of a small file at the package root (enjin.yaml, Procfile, …), or null; throws manifest_too_large for a manifest over ROOT_FILE_MAX */
  read(path: string): string | null;
  /** whether a file builders detect apps by is at the root, even one too large to read */
  has(path: string): boolean;
}

/**
 * Always captured when at the root and within ROOT_FILE_MAX: the manifests, and what builders detect an app by (see
 * core/builders/detect.ts); other root files share CAPTURE_BUDGET.
 */
const ALWAYS_CAPTURED = new Set([
  'enjin.yaml', 'enjin.yml', 'Procfile',
  'package.json', 'package-lock.json', 'npm-shrinkwrap.json', 'yarn.lock', 'pnpm-lock.yaml', 'server.js',
  'requirements.txt', 'pyproject.toml', 'Pipfile', 'Pipfile.lock', 'manage.py',
  'index.html',
]);
/** Of ALWAYS_CAPTURED, the manifests: one too large to read is an error; a larger lockfile is only noted as there. */
const MANIFESTS = new Set(['enjin.yaml', 'enjin.yml', 'Procfile']);
const CAPTURE_BUDGET = 4 * 1024 ** 2;
const META_MAX = 1024 ** 2;

const KINDS: Record<string, EntryKind> = { File: 'file', OldFile: 'file', Directory: 'directory', SymbolicLink: 'symlink' };
const TYPE_NAMES: Record<string, string> = {
  CharacterDevice: 'a character device',
  BlockDevice: 'a block device',
  FIFO: 'a FIFO (named pipe)',
  ContiguousFile: 'a contiguous file (type 7)',
  GNUDumpDir: 'a GNU dump directory',
  SparseFile: 'a sparse file',
};

export function invalidPackage(reason: string, cause?: unknown): EnjinError {
  return new EnjinError('package_invalid', `the package is not a valid .tar.gz archive (${reason}); pack it again with enjin`, { status: 422, cause });
}

export function hasGzipMagic(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

function bufferSource(buf: Buffer): Readable {
  // Small slices, so limits are enforced after each piece rather than after one huge decompression.
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += 65536) yield buf.subarray(i, i + 65536);
    })(),
  );
}

/**
 * Pipes `source` through gunzip into a node-tar parser (a Parser to scan, an Unpack to extract), so both see
 * exactly the same bytes. `fatal` is consulted after every chunk: once it returns an error, the stream stops.
 */
export async function feedTar(
  source: Readable,
  parser: Parser,
  limits: Required<PackageLimits>,
  fatal: () => EnjinError | null,
  taps: Transform[] = [],
): Promise<void> {
  const cap = streamCap(limits);
  let inflated = 0;
  let parserError: Error | null = null;
  let ended = false;
  parser.on('error', (err: Error) => {
    parserError ??= err;
  });
  // node-tar buffers whatever follows the end-of-archive marker; junk after it is only counted, never fed.
  parser.on('eof', () => {
    ended = true;
  });
  const stop = (): Error | null => {
    if (inflated > cap) return tooLarge(limits, 'stream');
    return fatal() ?? parserError;
  };
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      inflated += chunk.length;
      let err = stop();
      if (err || ended) return cb(err);
      const flowing = parser.write(chunk);
      err = stop();
      if (err || flowing) return cb(err);
      let settled = false;
      const settle = (e?: Error | null): void => {
        if (settled) return;
        settled = true;
        parser.off('drain', onDrain);
        parser.off('error', settle);
        cb(e ?? stop());
      };
      const onDrain = (): void => settle();
      parser.once('drain', onDrain);
      parser.once('error', settle);
    },
    final(cb) {
      const err = stop();
      if (err) return cb(err);
      let settled = false;
      const settle = (e?: Error | null): void => {
        if (settled) return;
        settled = true;
        cb(e ?? stop());
      };
      parser.once('end', () => settle());
      parser.once('error', settle);
      parser.end();
    },
  });
  try {
    await pipeline([source, ...taps, createGunzip(), sink]);
  } catch (err) {
    if (err instanceof EnjinError) throw err;
    const e = err as { code?: string; tarCode?: string; message?: string };
    if (e.code?.startsWith('Z_') || e.message === 'unexpected end of file') throw invalidPackage(`gzip: ${e.message}`, err);
    if (e.tarCode === 'TAR_BAD_ARCHIVE' || e.tarCode === 'TAR_ENTRY_INVALID' || e.tarCode === 'TAR_ABORT') throw invalidPackage(`tar: ${e.message}`, err);
    throw err;
  }
}

/** Why an entry is refused as a sparse file: GNU sparse (type S) arrives as its own type, PAX sparse as GNU.sparse.* keys. */
const PAX_SPARSE = /(^|\n)\d+ GNU\.sparse\./;

/** A compact key for the duplicate check: memory per entry stays small however long its path is. */
function pathKey(path: string): string {
  return path.length <= 64 ? path : `#${createHash('sha256').update(path).digest('base64')}`;
}

export interface ScanOptions {
  /** keep the list of entries (unpack compares extraction with it); inspection only needs the verdict */
  keepEntries?: boolean;
}

/**
 * Streaming passes over a package: lists every entry, enforces the limits as headers arrive (a huge size claim fails
 * at its header, a gzip bomb at the decompression cap) and collects every unsafe entry, then throws `package_unsafe`
 * for all of them at once. Memory does not grow with the entries' contents, only a small key per entry for the
 * duplicate check; when the package has symlinks a second pass checks that nothing is written through one.
 * `open` gives a fresh stream of the same bytes for each pass.
 */
export async function scanPackage(open: () => Readable, opts: PackageLimits = {}, scanOpts: ScanOptions = {}): Promise<PackageScan> {
  const limits = resolveLimits(opts);
  const problems = new ProblemList();
  const entries: ScannedEntry[] = [];
  const seen = new Set<string>();
  /** folded path → the symlink's own path and target */
  const links = new Map<string, { path: string; linkpath: string }>();
  const rootFiles = new Map<string, Buffer>();
  const oversizedRootFiles = new Map<string, number>();
  const presentRootFiles = new Set<string>();
  let count = 0;
  let declared = 0;
  let files = 0;
  let unpackedSize = 0;
  let budget = CAPTURE_BUDGET;
  let fatal: EnjinError | null = null;
  let sparseHeader = false;

  const admit = (entry: ReadEntry): boolean => {
    if (fatal) return false;
    count++;
    declared += entry.size ?? 0;
    if (count > limits.maxEntries) fatal = tooLarge(limits, 'entries', entry.path);
    else if (declared > limits.maxBytes) fatal = tooLarge(limits, 'bytes', entry.path);
    return !fatal;
  };

  const record = (entry: ReadEntry): void => {
    const norm = normalizeEntryPath(entry.path);
    if ('problem' in norm) return problems.add(entry.path, norm.problem);
    const kind = KINDS[entry.type];
    if (!kind) {
      if (entry.type === 'Link') return problems.add(entry.path, `is a hard link (to "${entry.linkpath}"); hard links are not allowed`);
      const what = TYPE_NAMES[entry.type] ?? `an entry of type "${entry.type}"`;
      return problems.add(entry.path, `is ${what}; only regular files, directories and symlinks are allowed`);
    }
    const path = norm.path;
    if (path === '') {
      if (kind !== 'directory') problems.add(entry.path, 'names the package root but is not a directory');
      return;
    }
    const key = pathKey(path);
    if (seen.has(key)) return problems.add(entry.path, 'appears twice; each path may appear once');
    seen.add(key);
    const size = entry.size ?? 0;
    if (scanOpts.keepEntries) entries.push(kind === 'symlink' ? { path, kind, size, linkpath: entry.linkpath ?? '' } : { path, kind, size });
    if (kind === 'symlink') links.set(foldPath(path), { path, linkpath: entry.linkpath ?? '' });
    if (kind === 'directory') return;
    files++;
    if (kind !== 'file') return;
    unpackedSize += size;
    if (path.includes('/')) return;
    const always = ALWAYS_CAPTURED.has(path);
    if (size > ROOT_FILE_MAX) {
      if (MANIFESTS.has(path)) oversizedRootFiles.set(path, size);
      else if (always) presentRootFiles.add(path);
      return;
    }
    if (always || size <= budget) {
      if (!always) budget -= size;
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => rootFiles.set(path, Buffer.concat(chunks)));
    }
  };

  const parser = new Parser({ strict: true, maxMetaEntrySize: META_MAX });
  // node-tar drops the PAX keys it does not know, so a PAX sparse file would otherwise pass as a small regular file.
  parser.on('meta', (text: string) => {
    if (PAX_SPARSE.test(text)) sparseHeader = true;
  });
  const sparse = (entry: ReadEntry): boolean => {
    if (!sparseHeader) return false;
    sparseHeader = false;
    problems.add(entry.path, 'is a sparse file (PAX GNU.sparse headers); only regular files, directories and symlinks are allowed');
    return true;
  };
  parser.on('entry', (entry: ReadEntry) => {
    if (admit(entry) && !sparse(entry)) record(entry);
    entry.resume();
  });
  // node-tar skips unknown entry types and oversized metadata records silently; a package must not contain either.
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    if (!admit(entry) || sparse(entry)) return;
    if (entry.meta) problems.add(entry.path, `is a metadata record larger than ${formatBytes(META_MAX)}`);
    else problems.add(entry.path, `is ${TYPE_NAMES[entry.type] ?? `an entry of type "${entry.type}"`}; only regular files, directories and symlinks are allowed`);
  });

  await feedTar(open(), parser, limits, () => fatal);
  if (fatal) throw fatal;

  if (links.size) {
    const isLink = (folded: string): boolean => links.has(folded);
    for (const l of links.values()) {
      const why = symlinkProblem(l.path, l.linkpath, isLink);
      if (why) problems.add(l.path, `is a symlink to "${l.linkpath}", which ${why}`);
    }
    const insideLink = (path: string): void => {
      const parts = path.split('/');
      let prefix = '';
      for (let i = 0; i < parts.length - 1; i++) {
        prefix = prefix ? `${prefix}/${parts[i]}` : parts[i];
        if (links.has(foldPath(prefix))) {
          problems.add(path, `is inside "${prefix}", which is a symlink; nothing may be written through a symlink`);
          break;
        }
      }
    };
    if (scanOpts.keepEntries) for (const e of entries) insideLink(e.path);
    else await eachEntryPath(open(), limits, insideLink);
  }
  if (problems.count) throw problems.toError();
  return { entries, files, unpackedSize, rootFiles, oversizedRootFiles, presentRootFiles };
}

/** A second pass over an archive already scanned: calls `visit` with each entry's normalized path. */
async function eachEntryPath(source: Readable, limits: Required<PackageLimits>, visit: (path: string) => void): Promise<void> {
  const parser = new Parser({ strict: true, maxMetaEntrySize: META_MAX });
  parser.on('entry', (entry: ReadEntry) => {
    const norm = normalizeEntryPath(entry.path);
    if ('path' in norm && norm.path !== '') visit(norm.path);
    entry.resume();
  });
  await feedTar(source, parser, limits, () => null);
}

/** Checks an uploaded package and reads its root files, writing nothing; throws package_invalid or package_unsafe. */
export async function inspectPackage(tarball: Buffer, opts?: PackageLimits): Promise<PackageInfo> {
  if (!hasGzipMagic(tarball)) throw invalidPackage('it does not start with the gzip signature');
  const sha256 = createHash('sha256').update(tarball).digest('hex');
  return packageInfo(sha256, await scanPackage(() => bufferSource(tarball), opts));
}

/**
 * inspectPackage for a package on disk (an upload streamed to a file): memory stays bounded whatever its size.
 * `sha256` is the hash computed while the file was written.
 */
export async function inspectPackageFile(path: string, sha256: string, opts?: PackageLimits): Promise<PackageInfo> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(2);
    await handle.read(head, 0, 2, 0);
    if (!hasGzipMagic(head)) throw invalidPackage('it does not start with the gzip signature');
    return packageInfo(sha256, await scanPackage(() => handle.createReadStream({ start: 0, autoClose: false }), opts));
  } finally {
    await handle.close();
  }
}

function packageInfo(sha256: string, scan: PackageScan): PackageInfo {
  return {
    sha256,
    files: scan.files,
    unpackedSize: scan.unpackedSize,
    read(path: string): string | null {
      const norm = normalizeEntryPath(path);
      if ('problem' in norm) return null;
      const size = scan.oversizedRootFiles.get(norm.path);
      if (size !== undefined) {
        throw new EnjinError('manifest_too_large', `${norm.path} is ${formatBytes(size)} (${size} bytes); a manifest may be at most ${formatBytes(ROOT_FILE_MAX)}, so keep data out of it`, { status: 413 });
      }
      return scan.rootFiles.get(norm.path)?.toString('utf8') ?? null;
    },
    has(path: string): boolean {
      return scan.rootFiles.has(path) || scan.oversizedRootFiles.has(path) || scan.presentRootFiles.has(path);
    },
  };
}
