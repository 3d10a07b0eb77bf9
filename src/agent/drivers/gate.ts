// The wrapper every task and command of the process driver starts as, so none of its code runs outside its cgroup.
import { spawn, type ChildProcess, type StdioNull, type StdioPipe } from 'node:child_process';
import type { Writable } from 'node:stream';
import { EnjinError } from '../../core/errors.ts';
import { readProcStat } from './process-tree.ts';
import type { CommandConfig } from './driver.ts';
import type { TaskCgroup } from './task-cgroup.ts';

/**
 * The task starts as this wrapper, already as the app's user, and waits on fd 3 until the agent has put its pid in
 * the task's cgroup; only then does it run the app's command (exec: same pid). So no process of the app ever runs
 * outside the cgroup, without giving the app's user write access to any cgroup file. A wrapper whose agent died
 * before saying "go" exits without running anything.
 */
export const GATE = 'IFS= read -r __enjin_gate <&3; exec 3<&-; [ "$__enjin_gate" = go ] || exit 125; unset __enjin_gate; exec sh -c "$1"';

/** A process started behind the gate and placed in its cgroup, waiting for `open()` to run its command. */
export interface GatedProcess {
  child: ChildProcess;
  pid: number;
  /** of `pid` (/proc/PID/stat field 22), to tell it from a re-used pid */
  startTime: number;
  /** OOM kills the cgroup had counted before this process: more on exit means it was killed for memory */
  oomBefore: number;
  /** lets the command run */
  open(): void;
}

/** What a task and a command share (CommandConfig), and how this process's output is wired. */
export interface GatedSpawn extends CommandConfig {
  /** the process's fd 0-2; fd 3 is the gate */
  stdio: [StdioNull | StdioPipe, StdioPipe | number, StdioPipe | number];
  /** shown as $0 in `ps` */
  label: string;
}

/**
 * Makes `cgroup` (null: none, the process is tracked by its tree), spawns the wrapper in its own process group as the
 * app's user, and puts it in the cgroup. On any failure nothing is left: no process, no cgroup.
 */
export async function spawnGated(config: GatedSpawn, cgroup: TaskCgroup | null, memoryLimitBytes: number | null): Promise<GatedProcess> {
  try {
    // create() also kills whatever an earlier run of the same name left in a cgroup of that name.
    await cgroup?.create(memoryLimitBytes);
  } catch (err) {
    throw new EnjinError('spawn_failed', `could not make the cgroup of ${config.id}: ${(err as Error).message}`, { status: 500, cause: err });
  }
  const oomBefore = cgroup?.oomKills() ?? 0;
  const child = spawn('sh', ['-c', GATE, config.label, config.command], {
    cwd: config.cwd,
    env: config.env,
    // its own process group: signals reach what it spawned, it survives the agent, and without a cgroup the group is
    // how its processes are found
    detached: true,
    stdio: [...config.stdio, 'pipe'],
    ...(config.uid !== undefined ? { uid: config.uid } : {}),
    ...(config.gid !== undefined ? { gid: config.gid } : {}),
  });
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    cgroup?.remove();
    throw new EnjinError('spawn_failed', `could not start \`${config.command}\`: ${err.message}`, { status: 500, cause: err });
  }
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => {}); // a wrapper that died early closes its end; its exit says the rest
  // Not yet reaped (that needs a turn of the event loop), so its stat is readable even if it already exited.
  const stat = readProcStat(pid);
  try {
    if (!stat) throw new Error(`process ${pid} vanished before it could be recorded; is /proc mounted?`);
    cgroup?.join(pid);
  } catch (err) {
    child.kill('SIGKILL');
    await cgroup?.kill();
    cgroup?.remove();
    throw new EnjinError('spawn_failed', `could not start \`${config.command}\`: ${(err as Error).message}`, { status: 500, cause: err });
  }
  return {
    child,
    pid,
    startTime: stat!.startTime,
    oomBefore,
    open: () => {
      gate.end('go\n');
      (gate as unknown as { unref?: () => void }).unref?.();
    },
  };
}
