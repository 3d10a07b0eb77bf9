// One-shot commands under the process driver (prepare, release, one-off runs): the same user, gate and cgroup as a
// task, output piped to the caller, and nothing of the command left running once it ends or is killed.
import type { CommandConfig, RunningCommand, TaskExit, TaskHandle } from './driver.ts';
import { spawnGated } from './gate.ts';
import { killTree } from './process-tree.ts';
import type { TaskCgroup } from './task-cgroup.ts';

/**
 * Starts `config.command` in `cgroup` (null: tracked by its process tree, where a child that detached twice can
 * escape). `exited` resolves only after whatever the command left behind in its cgroup (or process group) is killed.
 */
export async function runCommand(driver: string, config: CommandConfig, cgroup: TaskCgroup | null, memoryLimitBytes: number | null): Promise<RunningCommand> {
  const { child, pid, startTime, oomBefore, open } = await spawnGated(
    { id: config.id, command: config.command, cwd: config.cwd, env: config.env, uid: config.uid, gid: config.gid, stdio: [config.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], label: 'enjin-command' },
    cgroup,
    memoryLimitBytes,
  );
  child.on('error', () => {}); // errors after spawn (a kill of a gone process) are seen through exit
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
  open();
  const handle: TaskHandle = { driver, pid, startTime, ...(cgroup ? { cgroup: cgroup.ref } : {}) };
  return {
    handle,
    stdout: child.stdout!,
    stderr: child.stderr!,
    ...(config.stdin ? { stdin: child.stdin! } : {}),
    exited,
    kill: async () => {
      await killAll();
      await exited;
    },
  };
}
