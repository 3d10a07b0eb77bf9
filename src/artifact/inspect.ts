// Reads a package (tar.gz) in one streaming pass without writing anything, and rejects it whole if any entry is unsafe.
import { createHash } from 'node:crypto';
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
  /** in archive order, without the root directory entry */
  entries: ScannedEntry[];
  /** regular files and symlinks */
  files: number;
  /** sum of regular file sizes */
  unpackedSize: number;
  rootFiles: Map<string, Buffer>;
}

export interface PackageInfo {
  sha256: string;
  files: number;
  unpackedSize: number;
  /** the text of a small file at the package root (enjin.yaml, Procfile, …), or null */
  read(path: string): string | null;
}

/** Always captured when at the root and within ROOT_FILE_MAX; other root files share CAPTURE_BUDGET. */
const ALWAYS_CAPTURED = new Set(['enjin.yaml', 'enjin.yml', 'Procfile']);
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

/**
 * One streaming pass over a package: lists every entry, enforces the limits as headers arrive (a huge size
 * claim fails at its header, a gzip bomb at the decompression cap) and collects every unsafe entry,
 * then throws `package_unsafe` for all of them at once.
 */
export async function scanPackage(source: Readable, opts: PackageLimits = {}): Promise<PackageScan> {
  const limits = resolveLimits(opts);
  const problems = new ProblemList();
  const entries: ScannedEntry[] = [];
  const seen = new Set<string>();
  const rootFiles = new Map<string, Buffer>();
  let count = 0;
  let declared = 0;
  let files = 0;
  let unpackedSize = 0;
  let budget = CAPTURE_BUDGET;
  let fatal: EnjinError | null = null;

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
    if (seen.has(path)) return problems.add(entry.path, 'appears twice; each path may appear once');
    seen.add(path);
    const size = entry.size ?? 0;
    entries.push(kind === 'symlink' ? { path, kind, size, linkpath: entry.linkpath ?? '' } : { path, kind, size });
    if (kind === 'directory') return;
    files++;
    if (kind !== 'file') return;
    unpackedSize += size;
    const always = ALWAYS_CAPTURED.has(path);
    if (!path.includes('/') && size <= ROOT_FILE_MAX && (always || size <= budget)) {
      if (!always) budget -= size;
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => rootFiles.set(path, Buffer.concat(chunks)));
    }
  };

  const parser = new Parser({ strict: true, maxMetaEntrySize: META_MAX });
  parser.on('entry', (entry: ReadEntry) => {
    if (admit(entry)) record(entry);
    entry.resume();
  });
  // node-tar skips unknown entry types and oversized metadata records silently; a package must not contain either.
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    if (!admit(entry)) return;
    if (entry.meta) problems.add(entry.path, `is a metadata record larger than ${formatBytes(META_MAX)}`);
    else problems.add(entry.path, `is ${TYPE_NAMES[entry.type] ?? `an entry of type "${entry.type}"`}; only regular files, directories and symlinks are allowed`);
  });

  await feedTar(source, parser, limits, () => fatal);
  if (fatal) throw fatal;

  const links = new Set(entries.filter((e) => e.kind === 'symlink').map((e) => foldPath(e.path)));
  if (links.size) {
    for (const e of entries) {
      const parts = e.path.split('/');
      let prefix = '';
      for (let i = 0; i < parts.length - 1; i++) {
        prefix = prefix ? `${prefix}/${parts[i]}` : parts[i];
        if (links.has(foldPath(prefix))) {
          problems.add(e.path, `is inside "${prefix}", which is a symlink; nothing may be written through a symlink`);
          break;
        }
      }
      if (e.kind === 'symlink') {
        const why = symlinkProblem(e.path, e.linkpath ?? '', (f) => links.has(f));
        if (why) problems.add(e.path, `is a symlink to "${e.linkpath}", which ${why}`);
      }
    }
  }
  if (problems.count) throw problems.toError();
  return { entries, files, unpackedSize, rootFiles };
}

/** Checks an uploaded package and reads its root files, writing nothing; throws package_invalid or package_unsafe. */
export async function inspectPackage(tarball: Buffer, opts?: PackageLimits): Promise<PackageInfo> {
  if (!hasGzipMagic(tarball)) throw invalidPackage('it does not start with the gzip signature');
  const sha256 = createHash('sha256').update(tarball).digest('hex');
  const scan = await scanPackage(bufferSource(tarball), opts);
  return {
    sha256,
    files: scan.files,
    unpackedSize: scan.unpackedSize,
    read(path: string): string | null {
      const norm = normalizeEntryPath(path);
      if ('problem' in norm) return null;
      return scan.rootFiles.get(norm.path)?.toString('utf8') ?? null;
    },
  };
}
