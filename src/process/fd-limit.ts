// The process's open-file limit (RLIMIT_NOFILE): read it from /proc, and raise the soft limit to the hard one at start.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface NofileLimit {
  soft: number;
  hard: number;
}

/** Used where /proc is missing (not Linux): the common default, so derived caps stay conservative. */
const FALLBACK: NofileLimit = { soft: 1024, hard: 1024 };

/** RLIMIT_NOFILE of a process ('self' by default), from /proc/PID/limits; `unlimited` reads as a very large number. */
export function readNofileLimit(pid: number | 'self' = 'self'): NofileLimit {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/limits`, 'utf8');
  } catch {
    return FALLBACK;
  }
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!m) return FALLBACK;
  const num = (v: string) => (v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: num(m[1]), hard: num(m[2]) };
}

export interface RaiseResult {
  before: NofileLimit;
  after: NofileLimit;
  /** one line for the operator: what was done, or why not */
  message: string;
}

/**
 * Raises this process's soft descriptor limit to its hard limit, which needs no privilege. Node itself tries the same
 * at startup (node.cc, PlatformInit), so this mostly confirms and reports the limit; where that fell short it runs
 * util-linux's `prlimit` on our own pid (Node has no setrlimit). Children started afterwards inherit the limit.
 * Never throws: a process that cannot raise its limit still runs, with caps derived from the limit it has.
 */
export function raiseNofileLimit(): RaiseResult {
  const before = readNofileLimit();
  if (before.soft >= before.hard) {
    return { before, after: before, message: `file descriptors: limit ${before.soft} (the hard limit)` };
  }
  const hard = before.hard === Number.MAX_SAFE_INTEGER ? 'unlimited' : String(before.hard);
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5_000 });
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'prlimit (util-linux) is not installed' : String((err as Error).message).split('\n')[0];
    return { before, after: before, message: `file descriptors: could not raise the limit ${before.soft} to ${hard} (${why}); raise it with ulimit -n` };
  }
  const after = readNofileLimit();
  return { before, after, message: `file descriptors: limit raised from ${before.soft} to ${after.soft}` };
}
