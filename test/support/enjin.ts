// Runs the real `enjin` binary for end-to-end tests: `up` as a child process on free ports, CLI commands against it,
// HTTP through its router with a Host header.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import http from 'node:http';
import { createInterface } from 'node:readline';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/enjin.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `enjin-${prefix}-`));
}

/** Copies a fixture app to a temp dir so a test can change it. */
export function fixture(name: string): string {
  const dir = tempDir(name);
  cpSync(join(ROOT, 'test/fixtures', name), dir, { recursive: true });
  return dir;
}

export function runCli(args: string[], opts: { dataDir: string; cwd?: string; timeoutMs?: number; env?: Record<string, string> }): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, '--data', opts.dataDir, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`enjin ${args.join(' ')} timed out\n${stdout}\n${stderr}`)); }, opts.timeoutMs ?? 180_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      let json: unknown = null;
      try { json = JSON.parse(stdout); } catch { /* not JSON */ }
      resolvePromise({ code: code ?? -1, stdout, stderr, json });
    });
  });
}

const BLOCKS_DIR = join(tmpdir(), 'enjin-test-port-blocks');
const BLOCK = 500;

/**
 * Test files run side by side, each with its own enjin: each claims a block of instance ports of its own, so no
 * readiness probe can reach another enjin's app. A block is a lock file; one whose owner died is taken over.
 */
function claimPortBlock(): { range: string; release(): void } {
  mkdirSync(BLOCKS_DIR, { recursive: true });
  const blocks = (30000 - 20000) / BLOCK;
  const start = Math.floor(Math.random() * blocks);
  for (let k = 0; k < blocks; k++) {
    const block = (start + k) % blocks;
    const file = join(BLOCKS_DIR, String(block));
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(file, String(process.pid), { flag: 'wx' });
        const from = 20000 + block * BLOCK;
        return { range: `${from}-${from + BLOCK - 1}`, release: () => rmSync(file, { force: true }) };
      } catch {
        const owner = Number(readFileSync(file, 'utf8') || 0);
        if (owner && owner !== process.pid && alive(owner)) break;
        if (owner === process.pid) break;
        rmSync(file, { force: true });
      }
    }
  }
  throw new Error('no free block of test ports');
}

export class EnjinProcess {
  api = '';
  routerPort = 0;
  routerMaxConnections = 0;
  output = '';
  private constructor(readonly dataDir: string, readonly child: ChildProcess) {}

  /** `prefix`: a command that execs enjin in the same process, such as `prlimit --nofile=256:1024`. */
  static async start(dataDir: string, extra: string[] = [], prefix: string[] = []): Promise<EnjinProcess> {
    const ports = claimPortBlock();
    let child: ChildProcess;
    try {
      child = spawnUp(dataDir, ports.range, extra, prefix);
    } catch (err) {
      ports.release();
      throw err;
    }
    child.once('exit', () => ports.release());
    return EnjinProcess.attach(dataDir, child);
  }

  private static async attach(dataDir: string, child: ChildProcess): Promise<EnjinProcess> {
    const p = new EnjinProcess(dataDir, child);
    child.stderr!.on('data', (d) => (p.output += d));
    const lines = createInterface({ input: child.stdout! });
    let buffer = '';
    const ready = await new Promise<{ api: string; router: string; routerMaxConnections?: number }>((res, rej) => {
      const onExit = (code: number | null) => rej(new Error(`enjin up exited with ${code}: ${p.output}${buffer}`));
      child.once('exit', onExit);
      lines.on('line', (line) => {
        buffer += `${line}\n`;
        try {
          const parsed = JSON.parse(buffer);
          child.off('exit', onExit);
          res(parsed);
        } catch { /* the JSON is not complete yet */ }
      });
    });
    p.api = ready.api;
    p.routerPort = Number(new URL(ready.router).port);
    p.routerMaxConnections = ready.routerMaxConnections ?? 0;
    return p;
  }

  get token(): string {
    return JSON.parse(readFileSync(join(this.dataDir, 'credentials.json'), 'utf8')).token;
  }

  cli(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
    return runCli(args, { dataDir: this.dataDir, ...opts });
  }

  /** SIGINT (Ctrl-C) or SIGKILL; resolves with the exit code or signal once the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return { code: this.child.exitCode, signal: this.child.signalCode };
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => this.child.once('exit', (code, sig) => r({ code, signal: sig })));
    this.child.kill(signal);
    return done;
  }
}

function spawnUp(dataDir: string, portRange: string, extra: string[], prefix: string[] = []): ChildProcess {
  const args = [BIN, '--data', dataDir, '--json', 'up', '--api-port', '0', '--router-port', '0', '--router-host', '127.0.0.1', '--port-range', portRange, ...extra];
  const [cmd, ...rest] = prefix.length ? [...prefix, process.execPath, ...args] : [process.execPath, ...args];
  return spawn(cmd, rest, {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' },
  });
}

export interface HttpResult {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** GET through the router with a Host header (fetch cannot set Host). */
export function viaRouter(port: number, host: string, path = '/', opts: { method?: string; timeoutMs?: number } = {}): Promise<HttpResult> {
  return new Promise((res, rej) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { host }, agent: false, timeout: opts.timeoutMs ?? 30_000 }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body, headers: r.headers }));
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

/** Polls until `check` returns a truthy value; robust on a loaded machine, so only a generous overall limit. */
/** Polls `check` until it returns something truthy. `what` may be a function, read only on timeout (a process's output then). */
export async function eventually<T>(check: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string | (() => string), timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function cleanup(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/**
 * Runs `work` while one client sends requests for `host` through the router back to back (20 ms apart), and counts
 * every request and every failure (an error, a timeout, a status other than 200): for "no failed request" checks.
 */
export async function underLoad<T>(routerPort: number, host: string, work: () => Promise<T>): Promise<{ result: T; requests: number; failures: string[] }> {
  let requests = 0;
  const failures: string[] = [];
  let loading = true;
  const load = (async () => {
    while (loading) {
      requests++;
      await viaRouter(routerPort, host, '/', { timeoutMs: 10_000 })
        .then((r) => { if (r.status !== 200) failures.push(`${r.status} ${r.body.slice(0, 120)}`); })
        .catch((err: Error) => failures.push(err.message));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return { result: await work(), requests, failures };
  } finally {
    loading = false;
    await load;
  }
}
