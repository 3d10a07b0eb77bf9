// Router latency through `enjin up`, alone and while the API serves ~500 GET /v1/jobs per second: the router must not
// share the controller's event loop. Starts the real binary (dist/), deploys the node-app fixture, drives load from
// separate processes and prints both runs side by side.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runBench, saveResults, stopUp } from './common.ts';

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoDir = dirname(benchDir);
const BIN = join(repoDir, 'bin', 'enjin.js');
const HOST = 'hello.localhost';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const ROUTER_RATE = 200;
const API_RATE = 500;
const EXTRA_JOB_TREES = 8;

interface LoadResult {
  sent: number;
  ok: number;
  errors: number;
  non2xx: number;
  skipped: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
}

function run(args: string[], dataDir: string, cwd = repoDir): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, '--data', dataDir, '--json', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

function load(opts: Record<string, unknown>): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(benchDir, 'load-client.ts'), JSON.stringify(opts)], { cwd: repoDir, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load client exited with ${code}`))));
  });
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-bench-up-'));
  const dataDir = join(dir, 'data');
  const app = join(dir, 'app');
  cpSync(join(repoDir, 'test', 'fixtures', 'node-app'), app, { recursive: true });
  let up: ChildProcess | null = null;
  try {
    up = spawn(process.execPath, [BIN, '--data', dataDir, '--json', 'up', '--api-port', '0', '--router-port', '0', '--router-host', '127.0.0.1', '--port-range', '31000-31499'], {
      cwd: repoDir,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: up.stdout! });
    let buffer = '';
    const ready = await new Promise<{ api: string; router: string }>((resolve, reject) => {
      up!.once('exit', (code) => reject(new Error(`enjin up exited with ${code}`)));
      lines.on('line', (line) => {
        buffer += `${line}\n`;
        try {
          resolve(JSON.parse(buffer));
        } catch {
          // the JSON is not complete yet
        }
      });
    });
    const token = (JSON.parse(readFileSync(join(dataDir, 'credentials.json'), 'utf8')) as { token: string }).token;
    const deployed = await run(['deploy', app], dataDir, app);
    if (deployed.code !== 0) throw new Error(`deploy failed: ${deployed.out}`);
    // A history worth listing: more job trees (scales) besides the deploy.
    for (let i = 0; i < EXTRA_JOB_TREES; i++) {
      const r = await run(['scale', '--project', 'hello', `web=${i % 2 === 0 ? 3 : 2}`], dataDir, app);
      if (r.code !== 0) throw new Error(`scale failed: ${r.out}`);
    }
    const routerUrl = `${ready.router.replace('0.0.0.0', '127.0.0.1')}/`;
    const routerLoad = { url: routerUrl, host: HOST, ratePerSecond: ROUTER_RATE, seconds: SECONDS, connections: 8, maxInflight: 512 };
    const apiLoad = { url: `${ready.api}/v1/jobs`, token, ratePerSecond: API_RATE, seconds: SECONDS, connections: 64, maxInflight: 1024 };

    await load({ ...routerLoad, seconds: 2 }); // warm-up
    console.error(`  router alone: ${SECONDS} s at ${ROUTER_RATE} req/s`);
    const alone = await load(routerLoad);
    console.error(`  router with ${API_RATE} GET /v1/jobs per second in parallel`);
    const [loaded, api] = await Promise.all([load(routerLoad), load(apiLoad)]);

    const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '-');
    const row = (name: string, a: string, b: string) => `${name.padEnd(22)}${a.padEnd(18)}${b}`;
    const lines2 = [
      `router latency through enjin up: ${SECONDS} s at ${ROUTER_RATE} req/s (open loop, 8 connections), GET of the node-app fixture`,
      `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
      '',
      row('', 'router alone', `with ${API_RATE}/s GET /v1/jobs`),
      row('router p50', ms(alone.p50), ms(loaded.p50)),
      row('router p99', ms(alone.p99), ms(loaded.p99)),
      row('router max', ms(alone.max), ms(loaded.max)),
      row('router req/s', alone.rps.toFixed(0), loaded.rps.toFixed(0)),
      row('router errors', String(alone.errors + alone.non2xx + alone.skipped), String(loaded.errors + loaded.non2xx + loaded.skipped)),
      '',
      `API under load: ${api.rps.toFixed(0)} req/s answered of ${API_RATE} asked, p50 ${ms(api.p50)}, p99 ${ms(api.p99)}, errors ${api.errors + api.non2xx}, not sent (too many in flight) ${api.skipped}`,
    ];
    console.log(lines2.join('\n'));
    await saveResults('up-load', { seconds: SECONDS, routerRate: ROUTER_RATE, apiRate: API_RATE, alone, loaded, api });
    return 0;
  } finally {
    await stopUp(up);
    rmSync(dir, { recursive: true, force: true });
  }
}

await runBench(main);
