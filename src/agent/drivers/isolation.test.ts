import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups, type CgroupMode } from './cgroup-layout.ts';
import { isAlive, ProcessDriver, readProcStat } from './process.ts';
import type { TaskHandle } from './driver.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-isolation-'));
chmodSync(dir, 0o755);
/** every pid a test's tasks wrote down, killed after the tests whatever happened */
const started: Array<{ pid: number; startTime: number }> = [];

after(() => {
  for (const p of started) {
    if (isAlive(p.pid, p.startTime)) process.kill(p.pid, 'SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

const env = { PATH: '/usr/local/bin:/usr/bin:/bin' };

async function eventually<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Pids the task wrote to `file`, one per line, once `count` are there; remembered for cleanup. */
async function pidsIn(file: string, count: number): Promise<Array<{ pid: number; startTime: number }>> {
  const pids = await eventually(`${count} pids in ${file}`, () => {
    const list = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
    return list.length >= count ? list : undefined;
  });
  const out = pids.map((pid) => ({ pid, startTime: readProcStat(pid)?.startTime ?? -1 }));
  started.push(...out.filter((p) => p.startTime >= 0));
  return out;
}

const root = process.getuid?.() === 0;
const modes: CgroupMode[] = ['v1', 'v2', 'off'];

for (const mode of modes) {
  const usable = mode === 'off' || (root && detectCgroups(mode) !== null);
  test(`tracking ${mode}: stop leaves no process of the task, not even one that called setsid`, { skip: !usable && `no cgroup ${mode} here` }, async () => {
    const driver = new ProcessDriver({ cgroups: mode });
    assert.equal(driver.tracking, mode === 'off' ? 'process-tree' : `cgroup-${mode}`);
    const file = join(dir, `setsid-${mode}.pids`);
    // the main process stays (as an app's server would), a child moved to a session of its own beside it
    const handle = await driver.start({ id: `setsid-${mode}`, command: `setsid sleep 1000 & echo $! >> ${file}; echo $$ >> ${file}; exec sleep 1000`, cwd: dir, env, logPath: join(dir, `setsid-${mode}.log`) });
    const pids = await pidsIn(file, 2);
    await eventually('the setsid child in its own session', () => readProcStat(pids[0].pid)?.sid === pids[0].pid);
    const members = await driver.processes(handle);
    assert.ok(members.includes(pids[0].pid), 'the detached child is one of the task\'s processes');
    const stats = await driver.stats(handle);
    assert.ok(stats && stats.processes >= 2 && stats.rssBytes > 0, JSON.stringify(stats));
    await driver.stop(handle, { timeoutMs: 5000 });
    for (const p of pids) assert.equal(isAlive(p.pid, p.startTime), false, `pid ${p.pid} survived the stop`);
    assert.deepEqual(await driver.processes(handle), []);
  });
}

for (const mode of ['v1', 'v2'] as const) {
  const usable = root && detectCgroups(mode) !== null;
  test(`cgroup ${mode}: destroy (by a restarted agent's driver) kills a double-forked daemon and a child forking in a loop, and removes the cgroup`, { skip: !usable && `no cgroup ${mode} here` }, async () => {
    const driver = new ProcessDriver({ cgroups: mode });
    const file = join(dir, `daemon-${mode}.pids`);
    // The daemon's parent exits at once: it belongs to no tree of the task any more, only to its cgroup.
    const daemon = `( setsid sh -c 'sleep 1000 & echo $! >> ${file}' & ) ; `;
    // A process that forks all the time: it must not get a child out while it is being killed.
    const forker = `sh -c 'echo $$ >> ${file}; while :; do sleep 1000 & done' & `;
    const handle: TaskHandle = await driver.start({ id: `daemon-${mode}`, command: `${daemon}${forker}echo $$ >> ${file}; exec sleep 1000`, cwd: dir, env, logPath: join(dir, `daemon-${mode}.log`) });
    const pids = await pidsIn(file, 3);
    const daemonPid = pids.find((p) => readProcStat(p.pid)?.ppid !== handle.pid && p.pid !== handle.pid);
    assert.ok(daemonPid, 'the daemon left the task\'s tree');
    // what a restarted agent has: the handle from its state file, and a driver that never started the task
    const persisted = JSON.parse(JSON.stringify(handle)) as TaskHandle;
    const restarted = new ProcessDriver({ cgroups: mode });
    assert.equal(await restarted.recover(persisted), true);
    assert.ok((await restarted.processes(persisted)).includes(daemonPid.pid), 'the cgroup is found again, daemon and all');
    await restarted.destroy(persisted);
    for (const p of pids) assert.equal(isAlive(p.pid, p.startTime), false, `pid ${p.pid} survived destroy`);
    assert.deepEqual(await driver.processes(handle), []);
    for (const d of Object.values(handle.cgroup!.dirs)) assert.equal(existsSync(d), false, `${d} is gone`);
  });
}

const v1 = root ? detectCgroups('v1') : null;
test('a task over its memory limit is killed by the kernel and its exit says so; the agent lives on', { skip: !v1?.memory && 'no v1 memory cgroup here' }, async () => {
  const driver = new ProcessDriver({ cgroups: 'v1', memoryLimitBytes: 64 * 1024 * 1024 });
  assert.equal(driver.memoryLimitBytes, 64 * 1024 * 1024);
  const file = join(dir, 'hog.pids');
  const handle = await driver.start({ id: 'hog', command: `echo $$ >> ${file}; exec python3 -c "a = bytearray(b'x') * (512 * 1024 * 1024)"`, cwd: dir, env, logPath: join(dir, 'hog.log') });
  await pidsIn(file, 1);
  const exit = await driver.wait(handle);
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(exit.oomKilled, true);
  await driver.destroy(handle);
  // a task within the limit is not disturbed
  const fine = await driver.start({ id: 'hog', command: `exec python3 -c "a = bytearray(b'x') * (16 * 1024 * 1024)"`, cwd: dir, env, logPath: join(dir, 'hog.log') });
  assert.deepEqual(await driver.wait(fine), { code: 0, signal: null });
  await driver.destroy(fine);
});

test('a memory limit that no cgroup can apply is off, with a warning', async () => {
  const driver = new ProcessDriver({ cgroups: 'off', memoryLimitBytes: 64 * 1024 * 1024 });
  assert.equal(driver.memoryLimitBytes, null);
  assert.match(driver.warnings.join('\n'), /without a memory limit/);
});
