// The rules every package entry must pass, shared by pack, inspect and unpack so there is one definition of "safe".
import { EnjinError, type ErrorDetail } from '../core/errors.ts';

export interface PackageLimits {
  /** total declared size of all entries; also bounds how much is decompressed */
  maxBytes?: number;
  maxEntries?: number;
}

export const DEFAULT_MAX_BYTES = 1024 ** 3;
/**
 * Entries (files, directories, symlinks) per package. Source trees are a few thousand entries even for large apps,
 * since dependencies and build output are left out (.gitignore, .enjinignore) and made by `prepare`; 20,000 leaves
 * room for vendored trees while bounding the work and memory one upload can cost. ENJIN_PACKAGE_MAX_ENTRIES changes
 * it for every role of this process (packing, the controller's check, the agent's unpack).
 */
export const DEFAULT_MAX_ENTRIES = 20_000;
export const MAX_ENTRIES_ENV = 'ENJIN_PACKAGE_MAX_ENTRIES';

function configuredMaxEntries(): number {
  const raw = process.env[MAX_ENTRIES_ENV];
  if (raw === undefined || raw === '') return DEFAULT_MAX_ENTRIES;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) {
    throw new EnjinError('invalid_config', `${MAX_ENTRIES_ENV}=${raw} is not valid: give a whole number of entries from 1 to 10000000`, { status: 500 });
  }
  return n;
}
/** Root files up to this size are kept in memory during inspection (enjin.yaml, Procfile, …). */
export const ROOT_FILE_MAX = 1024 ** 2;
/** The longest entry path accepted; PATH_MAX on Linux. */
export const PATH_MAX_BYTES = 4096;
/** Every packed entry carries this mtime so the same tree gives the same bytes; after 1980 so zip-based tools accept it. */
export const PACKED_MTIME = new Date('2000-01-01T00:00:00Z');

export function resolveLimits(opts: PackageLimits = {}): Required<PackageLimits> {
  return { maxBytes: opts.maxBytes ?? DEFAULT_MAX_BYTES, maxEntries: opts.maxEntries ?? configuredMaxEntries() };
}

/**
 * Decompressed bytes allowed for a package: the content limit plus room for tar headers, padding and
 * long-path records. Past this the stream is stopped, whatever the headers claim (gzip bombs, junk after the end).
 */
export function streamCap(limits: Required<PackageLimits>): number {
  return limits.maxBytes + 2048 * limits.maxEntries + 16 * 1024 ** 2;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${+(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${+(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export type EntryKind = 'file' | 'directory' | 'symlink';

/**
 * The canonical form of an entry path ("" for the root itself), or why it is refused.
 * `.` and empty components are dropped because the filesystem ignores them too; `..` and absolute
 * paths are refused, never stripped, because a package that contains them was not made by us.
 */
export function normalizeEntryPath(raw: string): { path: string } | { problem: string } {
  if (raw.startsWith('/')) return { problem: 'has an absolute path' };
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return { problem: 'has a ".." component, which would write outside the package' };
  const path = parts.join('/');
  if (Buffer.byteLength(path) > PATH_MAX_BYTES) return { problem: `has a path longer than ${PATH_MAX_BYTES} bytes` };
  return { path };
}

/**
 * The key used to compare paths for symlink checks. Conservative on purpose: on a case-insensitive or
 * normalization-insensitive filesystem (macOS) `A` and `a` are the same directory.
 */
export function foldPath(path: string): string {
  return path.normalize('NFC').toLowerCase();
}

/**
 * Why the symlink at `linkPath` pointing to `target` could reach outside the package root, or null if it cannot.
 * The target is walked component by component from the link's directory. Before it passes through another
 * symlink, the walk is exact, so `..` is checked against the root. After it passes through one, the real
 * location depends on that link's target, so only descending is allowed: that link is itself checked to stay
 * inside, and descending from inside stays inside. `isSymlink` gets folded paths.
 */
export function symlinkProblem(linkPath: string, target: string, isSymlink: (folded: string) => boolean): string | null {
  if (target === '') return 'has an empty target';
  if (target.startsWith('/')) return 'points to an absolute path';
  const stack = linkPath.split('/').slice(0, -1);
  let throughLink = false;
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (throughLink) return 'goes up (..) after passing through another symlink, so where it lands cannot be checked';
      if (stack.length === 0) return 'points outside the package';
      stack.pop();
      continue;
    }
    stack.push(c);
    if (!throughLink && isSymlink(foldPath(stack.join('/')))) throughLink = true;
  }
  return null;
}

/**
 * Modes in a package carry one bit of meaning: executable or not. Normalizing them keeps the hash
 * independent of the packer's umask and keeps setuid bits and world-writable files out of hosts.
 */
export function normalizeMode(kind: EntryKind, mode: number | undefined): number {
  if (kind === 'directory') return 0o755;
  if (kind === 'symlink') return 0o777;
  return (mode ?? 0) & 0o111 ? 0o755 : 0o644;
}

/** Caps the details of one error so a package with a million bad entries does not produce a million-line answer. */
export class ProblemList {
  readonly details: ErrorDetail[] = [];
  private dropped = 0;

  constructor(private readonly max = 100) {}

  add(file: string, message: string): void {
    if (this.details.length < this.max) this.details.push({ file, message });
    else this.dropped++;
  }

  get count(): number {
    return this.details.length + this.dropped;
  }

  toError(): EnjinError {
    const n = this.count;
    const details = this.dropped ? [...this.details, { message: `…and ${this.dropped} more` }] : this.details;
    return new EnjinError(
      'package_unsafe',
      `the package has ${n} unsafe entr${n === 1 ? 'y' : 'ies'} and was rejected whole, nothing from it was used; deploy with the enjin CLI, which leaves such entries out`,
      { status: 422, details },
    );
  }
}

/**
 * The limit error. `file` is the entry whose header crossed the limit; 'stream' is the decompression cap,
 * hit by data no header declared. `package_too_large` is the packer's code, before anything is uploaded.
 */
export function tooLarge(limits: Required<PackageLimits>, what: 'bytes' | 'entries' | 'stream', file?: string, code: 'package_unsafe' | 'package_too_large' = 'package_unsafe'): EnjinError {
  const message =
    what === 'entries'
      ? `the package has more than ${limits.maxEntries} entries, the limit (${MAX_ENTRIES_ENV}); leave generated directories out with .enjinignore and let "prepare" build them`
      : `the package unpacks to more than ${formatBytes(limits.maxBytes)}, the limit; leave large or generated files out with .enjinignore and let "prepare" build them`;
  const detail =
    what === 'stream'
      ? `decompression stopped after ${formatBytes(streamCap(limits))}, more than the entries declare (a gzip bomb or data after the end of the archive)`
      : what === 'entries'
        ? `is entry number ${limits.maxEntries + 1}`
        : `brings the total past ${formatBytes(limits.maxBytes)}`;
  return new EnjinError(code, message, { status: code === 'package_unsafe' ? 422 : 413, details: [{ ...(file ? { file } : {}), message: detail }] });
}
