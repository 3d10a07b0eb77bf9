// One-shot commands under the process driver (prepare, release, one-off runs): the same user, gate and cgroup as a
// task, output piped to the caller, and nothing of the command left running once it ends or is killed.
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';
import { EnjinError } from '../../core/errors.ts';
import type { CommandConfig, RunningCommand, TaskExit, TaskHandle } from './driver.ts';
import { GATE } from './gate.ts';
import { killTree, readProcStat } from './process-tree.ts';
import type { TaskCgroup } from './task-cgroup.ts';

/**
 * Starts `config.command` in `cgroup` (null: tracked by its process tree, where a child that detached twice can
 * escape). `exited` resolves only after whatever the command left behind in its cgroup (or process group) is killed.
 */
export async function runCommand(driver: string, config: CommandConfig, cgroup: TaskCgroup | null, memoryLimitBytes: number | null): Promise<RunningCommand> {
  try {
    // create() also kills whatever an earlier run of the same command left in a cgroup of that name.
    await cgroup?.create(memoryLimitBytes);
  } catch (err) {
    throw new EnjinError('spawn_failed', `could not make the cgroup of ${config.id}: ${(err as Error).message}`, { status: 500, cause: err });
  }
  const oomBefore = cgroup?.oomKills() ?? 0;
  const child = spawn('sh', ['-c', GATE, 'enjin-command', config.command], {
    cwd: config.cwd,
    env: config.env,
    // its own process group: without a cgroup, that is how what it spawned is found
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    ...(config.uid !== undefined ? { uid: config.uid } : {}),
    ...(config.gid !== undefined ? { gid: config.gid } : {}),
  });
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    cgroup?.remove();
    throw new EnjinError('spawn_failed', `could not start \`${config.command}\`: ${err.message}`, { status: 500, cause: err });
  }
  child.on('error', () => {}); // errors after spawn (a kill of a gone process) are seen through exit
  const gate = child.stdio[3] as Writable;
  gate.on('error', () => {}); // a wrapper that died early closes its end; its exit says the rest
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
  const startTime = stat!.startTime;
  const killAll = async (): Promise<void> => {
    if (cgroup) await cgroup.kill();
    // After the main process exited, its process group still names what it left behind (unless it left the group).
    else await killTree(pid, startTime);
  };
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  }).then(async ({ code, signal }): Promise<TaskExit> => {
    const oomKilled = cgroup !== null && cgroup.oomKills() > oomBefore;
    // A one-shot command is over when its main process is: a daemon it started must not outlive it.
    await killAll();
    cgroup?.remove();
    return { code, signal, ...(oomKilled ? { oomKilled: true } : {}) };
  });
  gate.end('go\n');
  const handle: TaskHandle = { driver, pid, startTime, ...(cgroup ? { cgroup: cgroup.ref } : {}) };
  return {
    handle,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    kill: async () => {
      await killAll();
      await exited;
    },
  };
}
