// What every benchmark does the same way: stop the `enjin up` it started, keep its figures in bench/results, and turn
// its outcome into an exit code.
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** Writes `figures` (with the time) to bench/results/NAME-TIME.json and says where. */
export async function saveResults(name: string, figures: Record<string, unknown>): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const at = new Date().toISOString();
  const file = join(RESULTS_DIR, `${name}-${at.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify({ at, ...figures }, null, 2)}\n`);
  console.log(`results: ${file}`);
  return file;
}

/** Runs a benchmark's main: its return is the exit code; a throw says why on stderr and exits 1. */
export async function runBench(main: () => Promise<number>): Promise<void> {
  process.exitCode = await main().catch((err: unknown) => {
    console.error(`bench failed: ${(err as Error).message}`);
    return 1;
  });
}

/** Stops an `enjin up` a benchmark started: Ctrl-C (so it stops its apps), SIGKILL if it has not exited in 20 s. */

export async function stopUp(up: ChildProcess | null | undefined): Promise<void> {
  if (!up || up.exitCode !== null || up.signalCode !== null) return;
  const exited = new Promise((r) => up.once('exit', r));
  up.kill('SIGINT');
  const timer = setTimeout(() => up.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}
