// The process driver: runs an instance as `sh -c COMMAND` as the app's user, in a cgroup of its own where the host
// has cgroups (else tracking its process tree), logging straight to a file, recoverable after an agent restart; and
// one-shot commands (prepare) the same way (see command.ts).
import type { ChildProcess } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname } from 'node:path';
import { runCommand } from './command.ts';
import { detectCgroups, type CgroupLayout, type CgroupMode } from './cgroup-layout.ts';
import { spawnGated, type GatedProcess } from './gate.ts';
import { execIfSimple } from './shell-command.ts';
import type { CommandConfig, Driver, RunningCommand, TaskConfig, TaskExit, TaskHandle, TaskStats, TaskStatus } from './driver.ts';
import { isAlive, killTree, readProcStat, taskTree } from './process-tree.ts';
import { cgroupFor, isCgroupRef, TaskCgroup } from './task-cgroup.ts';

export { groupMembers, isAlive, readProcStat, type ProcStat } from './process-tree.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Child {
  child: ChildProcess;
  exited: Promise<TaskExit>;
  waiters: number;
}

export interface ProcessDriverOptions {
  /** how often a re-adopted process (not our child, so no exit event) is checked */
  pollMs?: number;
  /** how to track an instance's processes: 'auto' picks the host's cgroups; 'off' walks the process tree */
  cgroups?: CgroupMode;
  /** memory limit per instance, bytes; null or 0: none. Needs a cgroup with the memory controller. */
  memoryLimitBytes?: number | null;
  /** memory limit of each one-shot command (prepare), bytes; null or 0: none; absent: defaultCommandMemory(), or none if memoryLimitBytes is null or 0 */
  commandMemoryLimitBytes?: number | null;
}

/**
 * 4 GiB, or half the host's memory if that is less, and never less than an instance may use: builds (npm ci, a
 * bundler, tsc, cargo) routinely need more than the app they build, yet a runaway build must not take the host.
 */
export function defaultCommandMemory(instanceLimit: number | null): number {
  return Math.max(instanceLimit ?? 0, Math.min(4 * 1024 ** 3, Math.floor(totalmem() / 2)));
}

export class ProcessDriver implements Driver {
  readonly name = 'process';
  private readonly pollMs: number;
  private readonly layout: CgroupLayout | null;
  /** the memory limit actually applied to each instance (null: none) */
  readonly memoryLimitBytes: number | null;
  /** the memory limit actually applied to each one-shot command (null: none) */
  readonly commandMemoryLimitBytes: number | null;
  /** how processes are tracked: 'cgroup-v1', 'cgroup-v2' or 'process-tree' */
  readonly tracking: string;
  /** what the operator should know about isolation on this host (e.g. a memory limit that cannot be applied) */
  readonly warnings: string[] = [];
  private children = new Map<string, Child>();

  constructor(opts: ProcessDriverOptions = {}) {
    this.pollMs = opts.pollMs ?? 500;
    this.layout = detectCgroups(opts.cgroups ?? 'auto');
    this.tracking = this.layout ? `cgroup-v${this.layout.version}` : 'process-tree';
    const wanted = opts.memoryLimitBytes || null;
    this.memoryLimitBytes = wanted !== null && this.layout?.memory ? wanted : null;
    // An operator who turned the instance limit off (null or 0, not absent) turned it off for commands too.
    const limitsOff = opts.memoryLimitBytes !== undefined && !opts.memoryLimitBytes;
    const commandWanted = opts.commandMemoryLimitBytes === undefined ? (limitsOff ? null : defaultCommandMemory(wanted)) : opts.commandMemoryLimitBytes || null;
    this.commandMemoryLimitBytes = commandWanted !== null && this.layout?.memory ? commandWanted : null;
    if (wanted !== null && this.memoryLimitBytes === null) {
      this.warnings.push(`no cgroup with a memory controller is available to this process (${this.layout ? `cgroup v${this.layout.version} without memory` : 'no cgroups: not root, or none mounted'}): instances run without a memory limit`);
    }
    if (!this.layout && opts.cgroups !== 'off' && process.getuid?.() === 0) {
      this.warnings.push('no usable cgroup: an instance\'s processes are tracked by walking its process tree, and a child that detaches twice (a daemon) can outlive it');
    }
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    const cgroup = this.layout ? new TaskCgroup(cgroupFor(this.layout, config.id)) : null;
    mkdirSync(dirname(config.logPath), { recursive: true });
    // A FIFO the agent reads is opened read-write: the process then also holds a read end, so it never gets
    // EPIPE/SIGPIPE while no agent reads; its writes block once the pipe is full (see agent/instance-logs.ts).
    // Blocking, not O_NONBLOCK: the flag would be shared with the process, whose writes would then fail with EAGAIN.
    // A plain file is appended to, so the process keeps logging with no agent in between.
    const fd = statSync(config.logPath, { throwIfNoEntry: false })?.isFIFO() ? openSync(config.logPath, constants.O_RDWR) : openSync(config.logPath, 'a');
    let gated: GatedProcess;
    try {
      gated = await spawnGated(
        // exec'd when simple, so the recorded pid is the app's own (shell-command.ts)
        { id: config.id, command: execIfSimple(config.command), cwd: config.cwd, env: config.env, uid: config.uid, gid: config.gid, stdio: ['ignore', fd, fd], label: 'enjin-task' },
        cgroup,
        this.memoryLimitBytes,
      );
    } finally {
      closeSync(fd);
    }
    const { child, pid, startTime, oomBefore } = gated;
    gated.open();
    // The agent must be free to exit (or crash) without waiting for its instances.
    child.unref();
    const exited = new Promise<TaskExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal, ...(cgroup && cgroup.oomKills() > oomBefore ? { oomKilled: true } : {}) }));
    });
    child.on('error', () => {}); // errors after spawn (e.g. kill of a gone process) are seen through exit
    const handle: TaskHandle = { driver: this.name, pid, startTime, ...(cgroup ? { cgroup: cgroup.ref } : {}) };
    this.children.set(key(handle), { child, exited, waiters: 0 });
    return handle;
  }

  async run(config: CommandConfig): Promise<RunningCommand> {
    const cgroup = this.layout ? new TaskCgroup(cgroupFor(this.layout, config.id)) : null;
    return runCommand(this.name, config, cgroup, this.commandMemoryLimitBytes);
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
    // Every process of the task is asked, not just its group: a child that called setsid is still the app's.
    const asked = this.signalAll(handle, opts.signal ?? 'SIGTERM');
    if (asked) {
      const deadline = Date.now() + opts.timeoutMs;
      let delay = 20;
      while (this.members(handle).length && Date.now() < deadline) {
        await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
        delay = Math.min(delay * 2, 200);
      }
    }
    await this.destroy(handle);
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const cgroup = this.cgroupOf(handle);
    if (cgroup) {
      await cgroup.kill();
      cgroup.remove();
    } else {
      await killTree(handle.pid, handle.startTime);
    }
    this.children.delete(key(handle));
  }

  async inspect(handle: TaskHandle): Promise<TaskStatus> {
    return { alive: isAlive(handle.pid, handle.startTime), pid: handle.pid };
  }

  async stats(handle: TaskHandle): Promise<TaskStats | null> {
    if (!isAlive(handle.pid, handle.startTime)) return null;
    const pids = this.members(handle);
    const cgroup = this.cgroupOf(handle);
    let rssBytes = cgroup?.memoryBytes() ?? null;
    let cpuSeconds = cgroup?.cpuSeconds() ?? null;
    if (rssBytes === null || cpuSeconds === null) {
      let rss = 0;
      let ticks = 0;
      for (const pid of pids) {
        const s = readProcStat(pid);
        if (s) ticks += s.utime + s.stime;
        try {
          const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
          if (kb) rss += Number(kb[1]) * 1024;
        } catch {
          // exited meanwhile
        }
      }
      rssBytes ??= rss;
      // USER_HZ is 100 on every Linux the agent runs on (the kernel fixes it for user space).
      cpuSeconds ??= ticks / 100;
    }
    return { rssBytes, cpuSeconds, processes: pids.length };
  }

  async signal(handle: TaskHandle, signal: NodeJS.Signals): Promise<void> {
    this.signalAll(handle, signal);
  }

  async processes(handle: TaskHandle): Promise<number[]> {
    return this.members(handle);
  }

  private cgroupOf(handle: TaskHandle): TaskCgroup | null {
    return isCgroupRef(handle.cgroup) ? new TaskCgroup(handle.cgroup) : null;
  }

  private members(handle: TaskHandle): number[] {
    const cgroup = this.cgroupOf(handle);
    return cgroup ? cgroup.pids() : taskTree(handle.pid, handle.startTime).map((s) => s.pid);
  }

  /** Signals every process of the task; false if nothing of it is left. */
  private signalAll(handle: TaskHandle, signal: NodeJS.Signals): boolean {
    const pids = this.members(handle);
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
    return pids.length > 0;
  }
}

const key = (h: TaskHandle): string => `${h.pid}:${h.startTime}`;
