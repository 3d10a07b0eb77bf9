// One instance's cgroup (v1: a directory per hierarchy; v2: one directory): placing processes in it, limiting its
// memory, reading its usage, and killing everything in it without a race against fork.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupLayout } from './cgroup-layout.ts';

/** JSON-serializable: kept in the task handle, so a restarted agent finds the cgroup again. */
export interface CgroupRef {
  version: 1 | 2;
  /** v1: controller → directory; v2: { unified: directory } */
  dirs: Record<string, string>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const read = (path: string): string | null => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/** A cgroup name is the instance id: the same id always finds the same cgroup. */
export function cgroupFor(layout: CgroupLayout, id: string): CgroupRef {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id) || id.includes('..')) throw new Error(`${JSON.stringify(id)} cannot name a cgroup`);
  const dirs: Record<string, string> = {};
  for (const [controller, base] of Object.entries(layout.bases)) dirs[controller] = join(base, id);
  return { version: layout.version, dirs };
}

/** A ref read back from the agent's state file: only absolute directories named like ours (…/enjin/ID) are trusted. */
export function isCgroupRef(x: unknown): x is CgroupRef {
  const r = x as CgroupRef;
  return Boolean(r) && (r.version === 1 || r.version === 2) && typeof r.dirs === 'object' && r.dirs !== null &&
    Object.values(r.dirs).every((d) => typeof d === 'string' && d.startsWith('/') && /\/enjin\/[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(d) && !d.includes('..'));
}

export class TaskCgroup {
  constructor(readonly ref: CgroupRef) {}

  /** the directory whose cgroup.procs lists every process of the task */
  private get tracker(): string {
    return this.ref.version === 1 ? this.ref.dirs.freezer : this.ref.dirs.unified;
  }

  /** Makes the cgroup (emptying what a previous run may have left in it) and sets its memory limit. */
  async create(memoryLimitBytes: number | null): Promise<void> {
    for (const dir of Object.values(this.ref.dirs)) mkdirSync(dir, { recursive: true });
    if (this.pids().length) await this.kill();
    if (memoryLimitBytes === null) return;
    const limit = String(memoryLimitBytes);
    if (this.ref.version === 1 && this.ref.dirs.memory) {
      writeFileSync(join(this.ref.dirs.memory, 'memory.limit_in_bytes'), limit);
      // With swap accounting, memory+swap gets the same cap: a runaway app must not push the host into swap.
      const memsw = join(this.ref.dirs.memory, 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) writeFileSync(memsw, limit);
    } else if (this.ref.version === 2 && existsSync(join(this.ref.dirs.unified, 'memory.max'))) {
      writeFileSync(join(this.ref.dirs.unified, 'memory.max'), limit);
      const swap = join(this.ref.dirs.unified, 'memory.swap.max');
      if (existsSync(swap)) writeFileSync(swap, '0');
    }
  }

  /** Moves `pid` into the cgroup (in every hierarchy). */
  join(pid: number): void {
    for (const dir of Object.values(this.ref.dirs)) writeFileSync(join(dir, 'cgroup.procs'), String(pid));
  }

  exists(): boolean {
    return existsSync(this.tracker);
  }

  /** Every process in the cgroup. */
  pids(): number[] {
    const text = read(join(this.tracker, 'cgroup.procs'));
    return text ? text.split('\n').filter(Boolean).map(Number) : [];
  }

  signal(signal: NodeJS.Signals): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, signal);
      } catch {
        // exited meanwhile
      }
    }
  }

  /**
   * Kills every process in the cgroup. Frozen first, so no process can fork a new one between the listing and the
   * kill; v2's cgroup.kill does the same in the kernel. Resolves once the cgroup is empty (or after `timeoutMs`).
   */
  async kill(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const killFile = join(this.tracker, 'cgroup.kill');
    while (this.pids().length && Date.now() < deadline) {
      if (this.ref.version === 2 && existsSync(killFile)) {
        writeFileSync(killFile, '1');
      } else {
        await this.freeze(true, deadline);
        this.signal('SIGKILL');
        // Killed processes die once thawed.
        await this.freeze(false, deadline);
      }
      for (let i = 0; i < 25 && this.pids().length && Date.now() < deadline; i++) await sleep(20);
    }
  }

  private async freeze(frozen: boolean, deadline: number): Promise<void> {
    if (this.ref.version === 1) {
      const state = join(this.ref.dirs.freezer, 'freezer.state');
      writeFileSync(state, frozen ? 'FROZEN' : 'THAWED');
      // FREEZING while a task is in an uninterruptible sleep; it ends up FROZEN, or we go on and kill what we can.
      while (frozen && read(state)?.trim() !== 'FROZEN' && Date.now() < deadline - 5000) await sleep(10);
    } else {
      writeFileSync(join(this.ref.dirs.unified, 'cgroup.freeze'), frozen ? '1' : '0');
      while (frozen && !/^frozen 1$/m.test(read(join(this.ref.dirs.unified, 'cgroup.events')) ?? '') && Date.now() < deadline - 5000) await sleep(10);
    }
  }

  /** Removes the cgroup's directories; a cgroup still holding processes stays (and says so). */
  remove(): boolean {
    let removed = true;
    for (const dir of Object.values(this.ref.dirs)) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') removed = false;
      }
    }
    return removed;
  }

  /** Resident (anonymous) memory of the whole task, bytes; null if the cgroup cannot say. */
  memoryBytes(): number | null {
    const stat = this.ref.version === 1 ? (this.ref.dirs.memory ? read(join(this.ref.dirs.memory, 'memory.stat')) : null) : read(join(this.ref.dirs.unified, 'memory.stat'));
    const m = stat && (this.ref.version === 1 ? /^total_rss (\d+)$/m.exec(stat) : /^anon (\d+)$/m.exec(stat));
    return m ? Number(m[1]) : null;
  }

  /** CPU time of the task, all processes that ever ran in it, seconds; null if the cgroup cannot say. */
  cpuSeconds(): number | null {
    if (this.ref.version === 1) {
      const ns = this.ref.dirs.cpuacct ? read(join(this.ref.dirs.cpuacct, 'cpuacct.usage')) : null;
      return ns ? Number(ns) / 1e9 : null;
    }
    const m = /^usage_usec (\d+)$/m.exec(read(join(this.ref.dirs.unified, 'cpu.stat')) ?? '');
    return m ? Number(m[1]) / 1e6 : null;
  }

  /** How many times the kernel's OOM killer killed a process of the task. */
  oomKills(): number {
    const file = this.ref.version === 1 ? (this.ref.dirs.memory ? join(this.ref.dirs.memory, 'memory.oom_control') : '') : join(this.ref.dirs.unified, 'memory.events');
    const m = file ? /^oom_kill (\d+)$/m.exec(read(file) ?? '') : null;
    return m ? Number(m[1]) : 0;
  }
}
