// What /proc says about processes: one process's stat, process groups, and every descendant of a process (the
// tracking of last resort where no cgroup is available).
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z (zombie), X (dead), … */
  state: string;
  ppid: number;
  pgid: number;
  /** session id */
  sid: number;
  /** clock ticks */
  utime: number;
  stime: number;
  /** clock ticks after boot (field 22) */
  startTime: number;
}

/** Reads /proc/PID/stat; null if there is no such process. */
export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')': split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    pid,
    state: rest[0],
    ppid: Number(rest[1]),
    pgid: Number(rest[2]),
    sid: Number(rest[3]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    startTime: Number(rest[19]),
  };
}

export const gone = (s: ProcStat | null): boolean => s === null || s.state === 'Z' || s.state === 'X';

/** True if `pid` is a live process started at `startTime` (so not a re-used pid, and not a zombie). */
export function isAlive(pid: number, startTime: number): boolean {
  const s = readProcStat(pid);
  return !gone(s) && s!.startTime === startTime;
}

/** Every live process on the host (zombies left out). */
export function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const s = readProcStat(pid);
    if (s && !gone(s)) out.push(s);
  }
  return out;
}

/** Live (non-zombie) members of process group `pgid`. */
export function groupMembers(pgid: number): ProcStat[] {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return [];
  }
  // kill(0) also succeeds for a group of unreaped zombies (whose parent may never reap them), so look closer.
  return allProcesses().filter((s) => s.pgid === pgid);
}

/**
 * The live processes of a task without a cgroup: `root` (if it is still the process started at `rootStart`), every
 * descendant of it by parent pid, and the members of its process group (a child whose parent died is re-parented
 * away from the tree but keeps its group). A child that left the group (setsid) and lost its parent cannot be found:
 * that is what cgroups are for.
 */
export function taskTree(root: number, rootStart: number): ProcStat[] {
  const all = allProcesses();
  const found = new Map<number, ProcStat>();
  const rootStat = all.find((s) => s.pid === root);
  if (rootStat && rootStat.startTime === rootStart) found.set(root, rootStat);
  // The group is ours while any member lives: the kernel does not reuse a pid that still names a group.
  for (const s of all) if (s.pgid === root && (rootStat === undefined || rootStat.startTime === rootStart)) found.set(s.pid, s);
  const children = new Map<number, ProcStat[]>();
  for (const s of all) {
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  const queue = [...found.keys()];
  while (queue.length) {
    for (const c of children.get(queue.pop()!) ?? []) {
      if (found.has(c.pid)) continue;
      found.set(c.pid, c);
      queue.push(c.pid);
    }
  }
  return [...found.values()];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function send(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone meanwhile
  }
}

/**
 * Kills a task's tree without a cgroup. SIGSTOP first, walking again until no new process shows up, so nothing
 * forks while it is being killed (the poor man's freezer); then SIGKILL to all of them, and wait (bounded) until
 * none is left.
 */
export async function killTree(root: number, rootStart: number, timeoutMs = 10_000): Promise<void> {
  const stopped = new Map<number, number>();
  for (let round = 0; round < 50; round++) {
    const fresh = taskTree(root, rootStart).filter((s) => stopped.get(s.pid) !== s.startTime);
    if (fresh.length === 0) break;
    for (const s of fresh) {
      send(s.pid, 'SIGSTOP');
      stopped.set(s.pid, s.startTime);
    }
  }
  for (const [pid, start] of stopped) if (isAlive(pid, start)) send(pid, 'SIGKILL');
  const deadline = Date.now() + timeoutMs;
  while ([...stopped].some(([pid, start]) => isAlive(pid, start)) && Date.now() < deadline) await sleep(20);
}
