// The Driver interface: how the agent runs one instance's process and one-shot commands (prepare), so other runtimes (containers) plug in without touching supervision.
import type { Readable, Writable } from 'node:stream';

/** Everything a driver needs to run one task. */
export interface TaskConfig {
  /** the instance id, for naming (logs, containers, its cgroup) */
  id: string;
  /** shell command, run with `sh -c` */
  command: string;
  cwd: string;
  /** the complete environment: the driver adds nothing */
  env: Record<string, string>;
  /**
   * Where stdout and stderr go: a FIFO the agent reads into a capped log (opened read-write, so the task never gets
   * SIGPIPE while the agent is away), or a plain file the task appends to itself.
   */
  logPath: string;
  /** the UNIX user and group the task runs as (the agent's own when absent); supplementary groups are dropped */
  uid?: number;
  gid?: number;
}

/**
 * What identifies a running task across agent restarts. JSON-serializable: the agent persists it and hands it back
 * to `recover` after a restart.
 */
export interface TaskHandle {
  driver: string;
  pid: number;
  /** start time of `pid` (clock ticks after boot, /proc/PID/stat field 22): tells our process from a re-used pid */
  startTime: number;
  /** the cgroup holding every process of the task, where the driver made one (absent: its process tree is tracked) */
  cgroup?: { version: 1 | 2; dirs: Record<string, string> };
}

export interface TaskExit {
  /** null when killed by a signal, or when the exit status could not be observed (a re-adopted process) */
  code: number | null;
  signal: string | null;
  /** the kernel killed a process of the task because the task went over its memory limit */
  oomKilled?: boolean;
}

export interface TaskStatus {
  alive: boolean;
  pid: number;
}

export interface TaskStats {
  /** resident memory of the whole task (all its processes), bytes */
  rssBytes: number;
  /** user + system CPU time of the live processes of the task, seconds */
  cpuSeconds: number;
  processes: number;
}

/** A one-shot command (a version's prepare, a release step, a one-off run): runs to its end, output to the caller. */
export interface CommandConfig {
  /** names what the driver holds for the command (its cgroup): unique among commands and tasks, e.g. prepare-VERSION */
  id: string;
  /** shell command, run with `sh -c` */
  command: string;
  cwd: string;
  /** the complete environment: the driver adds nothing */
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  /** give the command a stdin pipe (a one-off run); default: no stdin (/dev/null) */
  stdin?: boolean;
}

export interface RunningCommand {
  /** persist it: after an agent restart, `destroy(handle)` kills whatever of the command is left */
  readonly handle: TaskHandle;
  /** the command's stdout and stderr; they end once every process holding them is gone */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** the command's stdin, when CommandConfig.stdin asked for one */
  readonly stdin?: Writable;
  /**
   * Resolves when the command's main process has exited AND everything it left behind (a daemon it started, even
   * one that called setsid) has been killed: a one-shot command never leaves processes running.
   */
  readonly exited: Promise<TaskExit>;
  /** Kills the command and everything it started, at once; resolves when they are gone. */
  kill(): Promise<void>;
}

export interface Driver {
  readonly name: string;
  /** Starts the task; resolves once it has been spawned (not once it is ready). */
  start(config: TaskConfig): Promise<TaskHandle>;
  /** After an agent restart: true if the task behind `handle` is still alive (and is still ours). */
  recover(handle: TaskHandle): Promise<boolean>;
  /** Resolves when the task's main process exits. `signal` stops watching (the promise then never settles). */
  wait(handle: TaskHandle, signal?: AbortSignal): Promise<TaskExit>;
  /** Asks the task to stop with `signal` (SIGTERM), kills it after `timeoutMs`; resolves when all its processes are gone. */
  stop(handle: TaskHandle, opts: { timeoutMs: number; signal?: NodeJS.Signals }): Promise<void>;
  /** Kills the task at once and releases whatever the driver holds for it. */
  destroy(handle: TaskHandle): Promise<void>;
  inspect(handle: TaskHandle): Promise<TaskStatus>;
  /** null when the task is not running */
  stats(handle: TaskHandle): Promise<TaskStats | null>;
  signal(handle: TaskHandle, signal: NodeJS.Signals): Promise<void>;
  /** Pids of every live process of the task, including children that left its process group or session. */
  processes(handle: TaskHandle): Promise<number[]>;
  /** Runs a one-shot command with the same isolation as a task (user, cgroup, memory limit for commands). */
  run(config: CommandConfig): Promise<RunningCommand>;
}
