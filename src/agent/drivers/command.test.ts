// One-shot commands under the process driver: output to the caller, a cgroup of their own with a memory limit for
// commands, and nothing they started left running after they end or are killed.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { detectCgroups } from './cgroup-layout.ts';
import { defaultCommandMemory, isAlive, ProcessDriver, readProcStat } from './process.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-command-'));
chmodSync(dir, 0o777);
const started: Array<{ pid: number; startTime: number }> = [];
const root = process.getuid?.() === 0;
const v1 = root ? detectCgroups('v1') : null;
const env = { PATH: '/usr/local/bin:/usr/bin:/bin' };

after(() => {
  for (const p of started) if (isAlive(p.pid, p.startTime)) process.kill(p.pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const collect = (s: Readable): Promise<string> => new Promise((resolve) => {
  let text = '';
  s.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text));
});

function remember(file: string): { pid: number; startTime: number } {
  const pid = Number(readFileSync(file, 'utf8').trim());
  const p = { pid, startTime: readProcStat(pid)?.startTime ?? -1 };
  started.push(p);
  return p;
}

/** a double fork into a new session that writes its pid to `file` before the command goes on */
const daemon = (file: string): string =>
  `(setsid sh -c 'echo $$ > ${file}.tmp; mv ${file}.tmp ${file}; exec sleep 1000' > /dev/null 2>&1 &); while [ ! -s ${file} ]; do sleep 0.05; done`;

test('a command runs in its own cgroup as the given user, its output reaches the caller, and its daemon dies with it', { skip: !v1 && 'needs cgroup v1 (root)' }, async () => {
  const driver = new ProcessDriver({ cgroups: 'v1' });
  const file = join(dir, 'ok.pid');
  const cmd = await driver.run({ id: 'prepare-cmd_ok', command: `${daemon(file)}; id -u; grep -c 'enjin/prepare-cmd_ok$' /proc/self/cgroup; echo oops >&2; exit 3`, cwd: dir, env, uid: 65534, gid: 65534 });
  const [out, err, exit] = await Promise.all([collect(cmd.stdout), collect(cmd.stderr), cmd.exited]);
  assert.deepEqual(exit, { code: 3, signal: null });
  const [uid, inCgroups] = out.trim().split('\n');
  assert.equal(uid, '65534');
  assert.ok(Number(inCgroups) >= 1, 'the command runs inside its prepare cgroup');
  assert.equal(err, 'oops\n');
  const d = remember(file);
  assert.equal(isAlive(d.pid, d.startTime), false, 'the daemon is gone once the command has ended');
  assert.equal(existsSync(cmd.handle.cgroup!.dirs.freezer), false, 'the cgroup is removed');
});

test('kill() takes the command and its daemon down at once', { skip: !v1 && 'needs cgroup v1 (root)' }, async () => {
  const driver = new ProcessDriver({ cgroups: 'v1' });
  const file = join(dir, 'kill.pid');
  const cmd = await driver.run({ id: 'prepare-cmd_kill', command: `${daemon(file)}; echo ready; exec sleep 1000`, cwd: dir, env });
  let out = '';
  const ended = new Promise((r) => cmd.stdout.setEncoding('utf8').on('data', (d: string) => (out += d)).on('end', r));
  for (let i = 0; i < 600 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
  const d = remember(file);
  assert.ok(isAlive(d.pid, d.startTime));
  await cmd.kill();
  assert.equal((await cmd.exited).signal, 'SIGKILL');
  assert.equal(isAlive(d.pid, d.startTime), false);
  await ended;
  assert.equal(out, 'ready\n');
});

test('a command over the memory limit for commands is killed by the kernel and its exit says so', { skip: !v1?.memory && 'no v1 memory cgroup here' }, async () => {
  const driver = new ProcessDriver({ cgroups: 'v1', memoryLimitBytes: 32 * 1024 * 1024, commandMemoryLimitBytes: 64 * 1024 * 1024 });
  assert.equal(driver.commandMemoryLimitBytes, 64 * 1024 * 1024);
  const hog = await driver.run({ id: 'prepare-cmd_hog', command: `exec python3 -c "a = bytearray(b'x') * (512 * 1024 * 1024)"`, cwd: dir, env });
  const exit = await hog.exited;
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(exit.oomKilled, true);
  // 48 MB: over the instance limit, within the one for commands
  const fine = await driver.run({ id: 'prepare-cmd_hog', command: `exec python3 -c "a = bytearray(b'x') * (48 * 1024 * 1024)"`, cwd: dir, env });
  assert.deepEqual(await fine.exited, { code: 0, signal: null });
});

test('the default memory limit for commands is larger than an instance\'s, bounded by the host, and can be turned off', () => {
  const gib = 1024 ** 3;
  assert.ok(defaultCommandMemory(gib) >= gib);
  assert.ok(defaultCommandMemory(null) <= 4 * gib);
  assert.equal(defaultCommandMemory(8 * gib), 8 * gib, 'never below what an instance may use');
  assert.equal(new ProcessDriver({ cgroups: 'off', commandMemoryLimitBytes: 64 * 1024 * 1024 }).commandMemoryLimitBytes, null, 'no cgroup, no limit');
  if (v1?.memory) {
    assert.equal(new ProcessDriver({ cgroups: 'v1', commandMemoryLimitBytes: null }).commandMemoryLimitBytes, null);
    assert.equal(new ProcessDriver({ cgroups: 'v1', memoryLimitBytes: null }).commandMemoryLimitBytes, null, 'limits turned off are off for commands too');
    assert.equal(new ProcessDriver({ cgroups: 'v1' }).commandMemoryLimitBytes, defaultCommandMemory(null));
  }
});
