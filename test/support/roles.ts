// Long-running `enjin controller | agent | router` processes for end-to-end tests: started with --json, up once their
// JSON answer is printed, stopped with SIGTERM (SIGKILL after 20 s), every one of them by stopRoles() in `after`.
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './enjin.ts';

/** A long-running `enjin …` whose --json answer (printed once it is up) is read from stdout. */
export interface Role {
  child: ChildProcess;
  answer: Record<string, any>;
  output(): string;
}

const started: ChildProcess[] = [];

export function startRole(args: string[], timeoutMs = 120_000): Promise<Role> {
  const child = spawn(process.execPath, [BIN, '--json', ...args], { env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let stdout = '';
  let stderr = '';
  const output = () => `stdout:\n${stdout}\nstderr:\n${stderr.slice(-4000)}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`enjin ${args.join(' ')} did not come up in ${timeoutMs} ms\n${output()}`)), timeoutMs);
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.on('data', (d) => {
      stdout += d;
      try {
        const answer = JSON.parse(stdout);
        clearTimeout(timer);
        resolve({ child, answer, output });
      } catch {
        // not whole yet
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`enjin ${args.join(' ')} exited (${signal ?? code}) before it was up\n${output()}`));
    });
  });
}

export async function stopRole(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(killer);
}

/** Stops every role started so far (in `after`, even when a test failed). */
export async function stopRoles(): Promise<void> {
  for (const child of started.splice(0)) await stopRole(child);
}
