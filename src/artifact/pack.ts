// Packs an app directory into a deterministic tar.gz, honouring .gitignore files and .enjinignore.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import ignore, { type Ignore } from 'ignore';
import { Header, Pax } from 'tar';
import { EnjinError } from '../core/errors.ts';
import { foldPath, normalizeMode, PACKED_MTIME, resolveLimits, symlinkProblem, tooLarge, type EntryKind, type PackageLimits } from './rules.ts';

export interface SkippedPath {
  path: string;
  reason: string;
}

export interface PackedDirectory {
  tarball: Buffer;
  /** hex sha256 of `tarball`: the package's identity */
  sha256: string;
  /** regular files and symlinks packed */
  files: number;
  /** bytes of `tarball` */
  size: number;
  /** what was left out although not ignored (sockets, symlinks leaving the tree…), for the CLI to mention */
  skipped: SkippedPath[];
}

/** Never packed, at any depth, whatever the ignore files say: VCS data and enjin's own local state. */
const ALWAYS_EXCLUDED = new Set(['.git', '.enjin']);
const GZIP_LEVEL = 6;
/** zlib writes the host OS into the gzip header; a fixed value keeps the bytes the same across hosts. */
const GZIP_OS_UNIX = 3;

interface Walked {
  path: string;
  kind: EntryKind;
  abs: string;
  mode: number;
  linkpath?: string;
}

/** Reads an ignore file's lines, or none if it is absent or not a regular file. */
async function ruleLines(path: string): Promise<string[]> {
  try {
    if (!(await lstat(path)).isFile()) return [];
    return (await readFile(path, 'utf8')).split(/\r?\n/);
  } catch {
    return [];
  }
}

/**
 * Rewrites a nested .gitignore's patterns relative to the package root, following gitignore(5): a
 * pattern with a slash before its end is anchored to the file's directory; one without matches at any
 * depth below it.
 */
function scopeRules(lines: string[], base: string): string[] {
  if (!base) return lines;
  const out: string[] = [];
  for (const raw of lines) {
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const negate = raw.startsWith('!') ? '!' : '';
    const body = raw.slice(negate.length);
    const anchored = body.replace(/\/+\s*$/, '').includes('/');
    out.push(anchored ? `${negate}${base}/${body.replace(/^\/+/, '')}` : `${negate}${base}/**/${body}`);
  }
  return out;
}

function kindOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isSocket(): boolean; isFIFO(): boolean }): EntryKind | string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isSocket()) return 'is a socket';
  if (st.isFIFO()) return 'is a FIFO (named pipe)';
  return 'is a device';
}

/**
 * Walks `root` in sorted order. Ignore precedence, lowest first: root .gitignore, deeper .gitignore files,
 * then .enjinignore, so `!dist/` in .enjinignore ships a build output that git ignores. As in git, a file
 * inside an ignored directory cannot be re-included. Machine-local excludes (.git/info/exclude,
 * core.excludesFile) are not read: the same tree must pack the same everywhere.
 */
async function walk(root: string, limits: Required<PackageLimits>): Promise<{ entries: Walked[]; skipped: SkippedPath[] }> {
  const entries: Walked[] = [];
  const skipped: SkippedPath[] = [];
  const enjinRules = await ruleLines(join(root, '.enjinignore'));
  let bytes = 0;

  const visit = async (rel: string, gitRules: string[], parentMatcher: Ignore | null): Promise<void> => {
    const abs = rel ? join(root, rel) : root;
    const own = await ruleLines(join(abs, '.gitignore'));
    const rules = own.length ? [...gitRules, ...scopeRules(own, rel)] : gitRules;
    const matcher = own.length || !parentMatcher ? ignore({ ignorecase: false }).add([...rules, ...enjinRules]) : parentMatcher;
    let names: string[];
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      throw new EnjinError('pack_failed', `cannot read the directory ${rel || '.'}: ${(err as Error).message}; fix its permissions or add it to .enjinignore`, { cause: err });
    }
    for (const name of names) {
      if (ALWAYS_EXCLUDED.has(name)) continue;
      const path = rel ? `${rel}/${name}` : name;
      const full = join(abs, name);
      let st;
      try {
        st = await lstat(full);
      } catch {
        skipped.push({ path, reason: 'disappeared while packing' });
        continue;
      }
      const kind = kindOf(st);
      if (matcher.ignores(kind === 'directory' ? `${path}/` : path)) continue;
      if (kind !== 'file' && kind !== 'directory' && kind !== 'symlink') {
        skipped.push({ path, reason: kind });
        continue;
      }
      if (entries.length >= limits.maxEntries) throw tooLarge(limits, 'entries', path, 'package_too_large');
      if (kind === 'file') {
        bytes += st.size;
        if (bytes > limits.maxBytes) throw tooLarge(limits, 'bytes', path, 'package_too_large');
      }
      const entry: Walked = { path, kind, abs: full, mode: st.mode };
      if (kind === 'symlink') entry.linkpath = await readlink(full);
      entries.push(entry);
      if (kind === 'directory') await visit(path, rules, matcher);
    }
  };
  await visit('', [], null);
  return { entries, skipped };
}

function tarHeader(e: Walked, size: number): Buffer[] {
  const fields = {
    path: e.kind === 'directory' ? `${e.path}/` : e.path,
    mode: normalizeMode(e.kind, e.mode),
    uid: 0,
    gid: 0,
    uname: '',
    gname: '',
    size,
    mtime: PACKED_MTIME,
    type: e.kind === 'file' ? ('File' as const) : e.kind === 'directory' ? ('Directory' as const) : ('SymbolicLink' as const),
    ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}),
  };
  const header = new Header(fields);
  const block = Buffer.alloc(512);
  // Long or non-ASCII paths and link targets go in a pax record before the header, as POSIX tar does.
  if (header.encode(block)) {
    const pax = new Pax({ path: fields.path, size, ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}) }).encode();
    return [pax, block];
  }
  return [block];
}

/**
 * Packs `dir` into a gzip'd tar. The same tree gives the same bytes on this Node build: entries sorted,
 * mtime/owner fixed, modes reduced to 644/755, hard links stored as plain files, fixed gzip level and OS byte.
 * Sockets, FIFOs, devices and symlinks that could lead outside the tree are skipped and listed in `skipped`,
 * never packed, because inspectPackage would reject the whole package for them.
 */
export async function packDirectory(dir: string, opts?: PackageLimits): Promise<PackedDirectory> {
  const limits = resolveLimits(opts);
  const { entries: walked, skipped } = await walk(dir, limits);

  const links = new Set(walked.filter((e) => e.kind === 'symlink').map((e) => foldPath(e.path)));
  const entries = walked.filter((e) => {
    if (e.kind !== 'symlink') return true;
    const why = symlinkProblem(e.path, e.linkpath ?? '', (f) => links.has(f));
    if (why) skipped.push({ path: e.path, reason: `is a symlink to "${e.linkpath}", which ${why}` });
    return !why;
  });

  const gzip = createGzip({ level: GZIP_LEVEL });
  const chunks: Buffer[] = [];
  gzip.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((res, rej) => {
    gzip.on('end', res);
    gzip.on('error', rej);
  });
  const write = async (buf: Buffer): Promise<void> => {
    if (!gzip.write(buf)) await new Promise((r) => gzip.once('drain', r));
  };

  let files = 0;
  for (const e of entries) {
    let content: Buffer | null = null;
    if (e.kind === 'file') {
      try {
        content = await readFile(e.abs);
      } catch (err) {
        throw new EnjinError('pack_failed', `cannot read ${e.path}: ${(err as Error).message}; fix its permissions or add it to .enjinignore`, { cause: err });
      }
    }
    if (e.kind !== 'directory') files++;
    // The size comes from what was read, so a file changing during the walk still yields a valid archive.
    for (const b of tarHeader(e, content?.length ?? 0)) await write(b);
    if (content?.length) {
      await write(content);
      const pad = (512 - (content.length % 512)) % 512;
      if (pad) await write(Buffer.alloc(pad));
    }
  }
  await write(Buffer.alloc(1024));
  gzip.end();
  await done;

  const tarball = Buffer.concat(chunks);
  tarball[9] = GZIP_OS_UNIX;
  const sha256 = createHash('sha256').update(tarball).digest('hex');
  return { tarball, sha256, files, size: tarball.length, skipped };
}
