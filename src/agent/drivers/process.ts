// The process driver: runs an instance as `sh -c COMMAND` in its own process group, logging straight to a file, recoverable after an agent restart.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { EnjinError } from '../../core/errors.ts';
import type { Driver, TaskConfig, TaskExit, TaskHandle, TaskStats, TaskStatus } from './driver.ts';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z (zombie), X (dead), … */
  state: string;
  ppid: number;
  pgid: number;
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
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    startTime: Number(rest[19]),
  };
}

const gone = (s: ProcStat | null): boolean => s === null || s.state === 'Z' || s.state === 'X';

/** True if `pid` is a live process started at `startTime` (so not a re-used pid, and not a zombie). */
export function isAlive(pid: number, startTime: number): boolean {
  const s = readProcStat(pid);
  return !gone(s) && s!.startTime === startTime;
}

/** Live (non-zombie) members of process group `pgid`. */
export function groupMembers(pgid: number): ProcStat[] {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return [];
  }
  // kill(0) also succeeds for a group of unreaped zombies (whose parent may never reap them), so look closer.
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const s = readProcStat(pid);
    if (s && s.pgid === pgid && !gone(s)) out.push(s);
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Child {
  child: ChildProcess;
  exited: Promise<TaskExit>;
  waiters: number;
}

export class ProcessDriver implements Driver {
  readonly name = 'process';
  /** how often a re-adopted process (not our child, so no exit event) is checked */
  private readonly pollMs: number;
  private children = new Map<string, Child>();

  constructor(opts: { pollMs?: number } = {}) {
    this.pollMs = opts.pollMs ?? 500;
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    mkdirSync(dirname(config.logPath), { recursive: true });
    // A FIFO the agent reads is opened read-write: the process then also holds a read end, so it never gets
    // EPIPE/SIGPIPE while no agent reads; its writes block once the pipe is full (see agent/instance-logs.ts).
    // Blocking, not O_NONBLOCK: the flag would be shared with the process, whose writes would then fail with EAGAIN.
    // A plain file is appended to, so the process keeps logging with no agent in between.
    const fd = statSync(config.logPath, { throwIfNoEntry: false })?.isFIFO() ? openSync(config.logPath, constants.O_RDWR) : openSync(config.logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn('sh', ['-c', config.command], {
        cwd: config.cwd,
        env: config.env,
        // its own process group, so stop reaches everything it spawned, and it survives the agent
        detached: true,
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new EnjinError('spawn_failed', `could not start \`${config.command}\`: ${err.message}`, { status: 500, cause: err });
    }
    // Not yet reaped (that needs a turn of the event loop), so its stat is readable even if it already exited.
    const stat = readProcStat(pid);
    if (!stat) throw new EnjinError('spawn_failed', `process ${pid} vanished before it could be recorded; is /proc mounted?`, { status: 500 });
    // The agent must be free to exit (or crash) without waiting for its instances.
    child.unref();
    const exited = new Promise<TaskExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    child.on('error', () => {}); // errors after spawn (e.g. kill of a gone process) are seen through exit
    this.children.set(`${pid}:${stat.startTime}`, { child, exited, waiters: 0 });
    return { driver: this.name, pid, startTime: stat.startTime };
  }

  async recover(handle: TaskHandle): Promise<boolean> {
    return isAlive(handle.pid, handle.startTime);
  }

  wait(handle: TaskHandle, signal?: AbortSignal): Promise<TaskExit> {
    if (signal?.aborted) return new Promise<TaskExit>(() => {});
    const own = this.children.get(key(handle));
    if (own) {
      // A waiter keeps the event loop alive for the exit event; once nobody waits the agent may exit freely.
      if (own.waiters++ === 0) own.child.ref();
      return new Promise<TaskExit>((resolve) => {
        let waiting = true;
        const release = (): void => {
          if (!waiting) return;
          waiting = false;
          if (--own.waiters === 0) own.child.unref();
        };
        signal?.addEventListener('abort', release, { once: true });
        void own.exited.then((exit) => {
          if (!waiting) return;
          release();
          signal?.removeEventListener('abort', release);
          resolve(exit);
        });
      });
    }
    // A re-adopted process is not our child: no exit event and no exit status, so watch /proc.
    return new Promise<TaskExit>((resolve) => {
      const timer = setInterval(() => {
        if (isAlive(handle.pid, handle.startTime)) return;
        clearInterval(timer);
        resolve({ code: null, signal: null });
      }, this.pollMs);
      signal?.addEventListener('abort', () => clearInterval(timer), { once: true });
    });
  }

  async stop(handle: TaskHandle, opts: { timeoutMs: number; signal?: NodeJS.Signals }): Promise<void> {
    if (this.signalGroup(handle, opts.signal ?? 'SIGTERM')) {
      // Wait for the whole group, not just the leader: a shell may die at once while its child shuts down cleanly.
      const deadline = Date.now() + opts.timeoutMs;
      let delay = 20;
      while (groupMembers(handle.pid).length && Date.now() < deadline) {
        await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
        delay = Math.min(delay * 2, 200);
      }
      await this.kill(handle);
    }
    this.children.delete(key(handle));
  }

  async destroy(handle: TaskHandle): Promise<void> {
    await this.kill(handle);
    this.children.delete(key(handle));
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    return { alive: isAlive(handle.pid, handle.startTime), pid: handle.pid };
  }

  async stats(handle: TaskHandle): Promise<TaskStats | null> {
    if (!isAlive(handle.pid, handle.startTime)) return null;
    let rssBytes = 0;
    let ticks = 0;
    const members = groupMembers(handle.pid);
    for (const m of members) {
      ticks += m.utime + m.stime;
      try {
        const status = readFileSync(`/proc/${m.pid}/status`, 'utf8');
        const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
        if (kb) rssBytes += Number(kb[1]) * 1024;
      } catch {
        // exited meanwhile
      }
    }
    // USER_HZ is 100 on every Linux the agent runs on (the kernel fixes it for user space).
    return { rssBytes, cpuSeconds: ticks / 100, processes: members.length };
  }

  async signal(handle: TaskHandle, signal: NodeJS.Signals): Promise<void> {
    this.signalGroup(handle, signal);
  }

  /** SIGKILL to the group, then wait (bounded) until it is empty. */
  private async kill(handle: TaskHandle): Promise<void> {
    if (!this.signalGroup(handle, 'SIGKILL')) return;
    const deadline = Date.now() + 10_000;
    while (groupMembers(handle.pid).length && Date.now() < deadline) await sleep(20);
  }

  /**
   * Signals the task's process group if it is still ours; false if nothing of it is left. The leader's pid names
   * the group; the kernel does not reuse that number while any member is alive, so the group is ours if its leader
   * is our process, or if the leader is gone and no other process has taken its pid.
   */
  private signalGroup(handle: TaskHandle, signal: NodeJS.Signals): boolean {
    const leader = readProcStat(handle.pid);
    if (leader && leader.startTime !== handle.startTime) return false;
    try {
      process.kill(-handle.pid, signal);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
      throw err;
    }
  }
}

const key = (h: TaskHandle): string => `${h.pid}:${h.startTime}`;
