import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupMembers, isAlive, ProcessDriver, readProcStat } from './process.ts';
import type { TaskHandle } from './driver.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-driver-'));
const groups = new Set<number>();

after(() => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function startTask(driver: ProcessDriver, name: string, command: string): Promise<TaskHandle> {
  const handle = await driver.start({ id: name, command, cwd: dir, env: { ...env, GREETING: 'hello' }, logPath: join(dir, `${name}.log`) });
  groups.add(handle.pid);
  return handle;
}

test('runs sh -c in cwd with the given env, logging to an append-mode file, and reports the exit code', async () => {
  const driver = new ProcessDriver();
  const handle = await startTask(driver, 'echo', 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3');
  assert.equal(readProcStat(handle.pid)?.startTime, handle.startTime);
  const exit = await driver.wait(handle);
  assert.deepEqual(exit, { code: 3, signal: null });
  assert.equal(readFileSync(join(dir, 'echo.log'), 'utf8'), `hello from ${dir}\noops\n`);
  await driver.destroy(handle); // releases its cgroup
  const again = await startTask(driver, 'echo', 'echo again');
  await driver.wait(again);
  await driver.destroy(again);
  assert.match(readFileSync(join(dir, 'echo.log'), 'utf8'), /oops\nagain\n$/);
});

test('stop signals the whole process group: a child the command spawned dies too', async () => {
  const driver = new ProcessDriver();
  const pidFile = join(dir, 'child.pid');
  const handle = await startTask(driver, 'group', `sleep 300 & echo $! > ${pidFile}; wait`);
  await until('the child pid', () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
  const child = Number(readFileSync(pidFile, 'utf8'));
  assert.equal(readProcStat(child)?.pgid, handle.pid, 'the child is in the task group');
  const waited = driver.wait(handle);
  await driver.stop(handle, { timeoutMs: 10_000 });
  assert.equal(groupMembers(handle.pid).length, 0);
  const s = readProcStat(child);
  assert.ok(s === null || s.state === 'Z', 'the child is gone');
  assert.equal((await waited).signal, 'SIGTERM');
  assert.equal((await driver.inspect(handle)).alive, false);
});

test('a task that ignores SIGTERM is killed with SIGKILL after the stop timeout', async () => {
  const driver = new ProcessDriver();
  const ready = join(dir, 'stubborn.ready');
  const handle = await startTask(driver, 'stubborn', `trap '' TERM; touch ${ready}; while :; do sleep 1; done`);
  await until('the trap to be set', () => existsSync(ready));
  const t0 = Date.now();
  await driver.stop(handle, { timeoutMs: 600 });
  assert.ok(Date.now() - t0 >= 500, 'it outlived SIGTERM until the timeout');
  assert.equal(groupMembers(handle.pid).length, 0);
  assert.equal(await driver.recover(handle), false);
});

test('recover and wait work for a process that is not our child (polling /proc, checking the start time)', async () => {
  const outsider = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });
  outsider.unref();
  const pid = outsider.pid!;
  groups.add(pid);
  const startTime = readProcStat(pid)!.startTime;
  const driver = new ProcessDriver({ pollMs: 50 });
  const handle: TaskHandle = { driver: 'process', pid, startTime };
  assert.equal(await driver.recover(handle), true);
  assert.equal(await driver.recover({ ...handle, startTime: startTime + 1 }), false, 'a re-used pid is not ours');
  const stats = await driver.stats(handle);
  assert.ok(stats && stats.processes === 1 && stats.rssBytes > 0);
  const waited = driver.wait(handle);
  process.kill(pid, 'SIGKILL');
  assert.deepEqual(await waited, { code: null, signal: null });
  assert.equal(isAlive(pid, startTime), false);

  // wait stops polling when asked to
  const ac = new AbortController();
  const never = driver.wait({ driver: 'process', pid: process.pid, startTime: readProcStat(process.pid)!.startTime }, ac.signal);
  ac.abort();
  const r = await Promise.race([never.then(() => 'settled'), new Promise((res) => setTimeout(() => res('pending'), 200))]);
  assert.equal(r, 'pending');
});

test('start fails with a coded error when the directory does not exist', async () => {
  const driver = new ProcessDriver();
  await assert.rejects(
    driver.start({ id: 'nodir', command: 'true', cwd: join(dir, 'missing'), env, logPath: join(dir, 'nodir.log') }),
    (e: Error & { code?: string }) => e.code === 'spawn_failed',
  );
});
