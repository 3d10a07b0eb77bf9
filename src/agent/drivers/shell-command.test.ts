// A simple command is exec'd, so the pid the agent records (and `ps` shows) is the app's own; anything else runs as written.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessDriver } from './process.ts';
import { execIfSimple } from './shell-command.ts';

const dir = mkdtempSync(join(tmpdir(), 'enjin-exec-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('simple commands get exec; shell syntax, assignments and builtins do not', () => {
  for (const simple of ['node server.js', 'gunicorn app:app --bind=0.0.0.0:8000', '  ./bin/web  -p 3000 ', 'npm start', 'python3 -m http.server']) {
    assert.equal(execIfSimple(simple), `exec ${simple.trim()}`, simple);
  }
  for (const shell of [
    'node a.js | tee x', 'a && b', 'a; b', 'a > log', 'a < in', 'python $APP', 'echo `id`', 'ls *.js', 'echo "hi"', "echo 'hi'",
    'a &', 'PORT=1 node a.js', 'cd app', 'exec node a.js', 'node a.js # comment', 'a\nb', 'export X', '(a)', 'echo ~', 'a || b', '',
  ]) {
    assert.equal(execIfSimple(shell), shell, JSON.stringify(shell));
  }
});

test('the process driver runs a simple command as its own pid, a pipeline under its shell', async (t) => {
  const driver = new ProcessDriver();
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const cmdline = (pid: number): string => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  /** Starts a task and waits (bounded) until its recorded pid runs `expected`: the gate waits for "go", then execs. */
  const runsAs = async (name: string, command: string, expected: string): Promise<string> => {
    const handle = await driver.start({ id: name, command, cwd: dir, env, logPath: join(dir, `${name}.log`) });
    t.after(async () => {
      await driver.stop(handle, { timeoutMs: 1000 });
      await driver.destroy(handle);
    });
    const deadline = Date.now() + 20_000;
    while (cmdline(handle.pid) !== expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return cmdline(handle.pid);
  };
  assert.equal(await runsAs('simple', 'sleep 301', 'sleep 301'), 'sleep 301', 'the recorded pid is the app itself');
  assert.equal(await runsAs('piped', 'sleep 302 | cat', 'sh -c sleep 302 | cat'), 'sh -c sleep 302 | cat', 'a pipeline keeps its shell');
});
