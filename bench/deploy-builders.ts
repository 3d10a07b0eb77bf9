// First and second deploy (a code-only change) of the Node and Python builder samples through `enjin up`: the second
// reuses node_modules / the virtualenv from the project's build cache. Then a config change (`enjin config set`): a
// release of the same build, which prepares nothing. Starts the real binary (dist/), prints a table.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runBench, saveResults, stopUp } from './common.ts';


const benchDir = dirname(fileURLToPath(import.meta.url));
const repoDir = dirname(benchDir);
const BIN = join(repoDir, 'bin', 'enjin.js');

interface Job {
  kind?: string;
  title: string;
  startedAt: string | null;
  finishedAt: string | null;
  log?: string[];
  children?: Job[];
}

interface Sample {
  name: string;
  fixture: string;
  /** the code-only change made before the second deploy */
  change: { file: string; from: string; to: string };
  /** what the prepare log says when the cache was reused */
  reused: RegExp;
  setup?: (dir: string) => void;
}

const SAMPLES: Sample[] = [
  { name: 'node (npm ci, 1 dependency)', fixture: 'builder-node', change: { file: 'server.js', from: "'first'", to: "'second'" }, reused: /reused node_modules/ },
  {
    name: 'python (venv, local wheel)',
    fixture: 'builder-python',
    change: { file: 'app.py', from: 'RELEASE = "first"', to: 'RELEASE = "second"' },
    reused: /reused the virtualenv/,
    setup: (dir) => execFileSync('python3', [join(dir, 'vendor/make_wheel.py')]),
  },
];

function run(args: string[], dataDir: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, '--data', dataDir, '--json', ...args], { cwd: repoDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

function flatten(job: Job): Job[] {
  return [job, ...(job.children ?? []).flatMap(flatten)];
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface Measure {
  wallMs: number;
  prepareMs: number;
  reused: boolean;
}

async function deployOnce(dir: string, project: string, dataDir: string, reused: RegExp): Promise<Measure> {
  const started = performance.now();
  const r = await run(['deploy', dir, '--project', project], dataDir);
  const wallMs = performance.now() - started;
  if (r.code !== 0) throw new Error(`deploy of ${project} failed: ${r.err}${r.out}`);
  const jobs = flatten((JSON.parse(r.out) as { job: Job }).job);
  const prepare = jobs.find((j) => j.title.startsWith('prepare '));
  const prepareMs = prepare?.startedAt && prepare.finishedAt ? Date.parse(prepare.finishedAt) - Date.parse(prepare.startedAt) : NaN;
  return { wallMs, prepareMs, reused: jobs.some((j) => (j.log ?? []).some((l) => reused.test(l))) };
}

/** `enjin config set` of one var: a new release of the current build, rolled out; nothing may be prepared. */
async function configSet(project: string, dataDir: string): Promise<{ wallMs: number; prepared: boolean }> {
  const started = performance.now();
  const r = await run(['config', 'set', `BENCH_AT=${Date.now()}`, '--project', project], dataDir);
  const wallMs = performance.now() - started;
  if (r.code !== 0) throw new Error(`config set on ${project} failed: ${r.err}${r.out}`);
  const jobs = flatten((JSON.parse(r.out) as { job: Job }).job);
  return { wallMs, prepared: jobs.some((j) => (j.log ?? []).some((l) => l.startsWith('$ '))) };
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-bench-builders-'));
  // Passable, so the apps' files (versions, caches) stay in it and go with it, not in /var/lib/enjin.
  chmodSync(dir, 0o711);
  const dataDir = join(dir, 'data');
  let up: ChildProcess | null = null;
  try {
    up = spawn(process.execPath, [BIN, '--data', dataDir, '--json', 'up', '--api-port', '0', '--router-port', '0', '--router-host', '127.0.0.1', '--port-range', '31500-31999'], { cwd: repoDir, stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: up.stdout! });
    let buffer = '';
    await new Promise<void>((resolve, reject) => {
      up!.once('exit', (code) => reject(new Error(`enjin up exited with ${code}`)));
      lines.on('line', (line) => {
        buffer += `${line}\n`;
        try {
          JSON.parse(buffer);
          resolve();
        } catch {
          // the JSON is not complete yet
        }
      });
    });
    const rows: Array<{ sample: string; first: Measure; second: Measure; config: { wallMs: number; prepared: boolean } }> = [];
    for (const [i, s] of SAMPLES.entries()) {
      const app = join(dir, s.fixture);
      cpSync(join(repoDir, 'test', 'fixtures', s.fixture), app, { recursive: true });
      s.setup?.(app);
      const project = `bench${i}`;
      console.error(`  ${s.name}: first deploy`);
      const first = await deployOnce(app, project, dataDir, s.reused);
      const file = join(app, s.change.file);
      writeFileSync(file, readFileSync(file, 'utf8').replace(s.change.from, s.change.to));
      console.error(`  ${s.name}: second deploy (code-only change)`);
      const second = await deployOnce(app, project, dataDir, s.reused);
      console.error(`  ${s.name}: config set (a release of the same build)`);
      const config = await configSet(project, dataDir);
      rows.push({ sample: s.name, first, second, config });
    }
    const row = (a: string, b: string, c: string, d: string, e: string, f: string) => `${a.padEnd(30)}${b.padEnd(14)}${c.padEnd(14)}${d.padEnd(14)}${e.padEnd(26)}${f}`;
    console.log([
      'deploy through enjin up: wall time of `enjin deploy` and of its prepare job, first deploy then a code-only change',
      `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      '',
      row('sample', 'first', 'first prep', 'second', 'second prep (cache)', 'config set (no build)'),
      ...rows.map((r) => row(r.sample, seconds(r.first.wallMs), seconds(r.first.prepareMs), seconds(r.second.wallMs), `${seconds(r.second.prepareMs)} (${r.second.reused ? 'reused' : 'NOT reused'})`, `${seconds(r.config.wallMs)}${r.config.prepared ? ' (PREPARED AGAIN)' : ''}`)),
    ].join('\n'));
    await saveResults('deploy-builders', { rows });
    return rows.every((r) => r.second.reused && !r.config.prepared) ? 0 : 1;
  } finally {
    await stopUp(up);
    rmSync(dir, { recursive: true, force: true });
  }
}

await runBench(main);
