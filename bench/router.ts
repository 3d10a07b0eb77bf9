// Router benchmark: wrk against a static nginx backend directly, through nginx as a proxy, and through the enjin router.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench, saveResults } from './common.ts';

const HOSTNAME = 'bench.enjin.test';
const DURATION_S = 10;
const WARMUP_S = 2;
const CONNECTIONS = [10, 50];
const BODY = 'hello from the backend\n';

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoDir = dirname(benchDir);

interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  errors: number;
  non2xx: number;
}

interface Row extends WrkResult {
  target: 'direct' | 'nginx' | 'router';
  connections: number;
}

function which(cmd: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    const p = join(d, cmd);
    if (d && existsSync(p)) return p;
  }
  return null;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** GETs until the target answers 200, so measurements never include start-up. */
async function waitReady(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/', headers: { host: HOSTNAME }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.end();
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${what} on port ${port} did not become ready (last status ${status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function nginxConf(dir: string, port: number, server: string, extraHttp = ''): string {
  // One worker: the router is one Node process (one core), so nginx gets one core too.
  return `
worker_processes 1;
${process.getuid?.() === 0 ? 'user root root;' : ''}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  ${extraHttp}
  server {
    listen 127.0.0.1:${port};
    ${server}
  }
}
`;
}

function startNginx(nginx: string, dir: string, conf: string): ChildProcess {
  return spawn(nginx, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

function runWrk(wrk: string, port: number, connections: number, seconds: number): WrkResult {
  const r = spawnSync(
    wrk,
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s', '-H', `Host: ${HOSTNAME}`, `http://127.0.0.1:${port}/`],
    { encoding: 'utf8', timeout: (seconds + 20) * 1000 },
  );
  if (r.status !== 0) throw new Error(`wrk failed (status ${r.status}): ${r.stderr || r.error?.message}`);
  const out = r.stdout;
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? Number.NaN);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: parseDuration(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    p99ms: parseDuration(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    requests: num(/(\d+) requests in/),
    errors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

function rssKiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/**
 * Compiles the router child (and only what it imports) to JavaScript, as the product ships, so neither the tsx loader's
 * memory nor its hooks are measured. Returns the node arguments to run it; falls back to tsx if compiling fails.
 */
async function compileRouter(dir: string): Promise<string[]> {
  const out = join(dir, 'build');
  const tsc = join(repoDir, 'node_modules', 'typescript', 'bin', 'tsc');
  const flags = ['--outDir', out, '--rootDir', repoDir, '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
  flags.push('--rewriteRelativeImportExtensions', '--allowImportingTsExtensions', '--skipLibCheck', '--strict');
  spawnSync(process.execPath, [tsc, ...flags, join(benchDir, 'router-child.ts')], { cwd: repoDir, encoding: 'utf8', timeout: 120_000 });
  const entry = join(out, 'bench', 'router-child.js');
  if (!existsSync(entry)) {
    console.error('  (could not compile the router; running it through tsx instead)');
    return ['--import', 'tsx', join(benchDir, 'router-child.ts')];
  }
  // The compiled files resolve undici from the repository's node_modules, and are ES modules like their sources.
  await symlink(join(repoDir, 'node_modules'), join(out, 'node_modules'));
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n');
  return [entry];
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<number> {
  const wrk = which('wrk');
  const nginx = which('nginx');
  if (!wrk || !nginx) {
    console.error(`the router benchmark needs ${[!wrk && 'wrk', !nginx && 'nginx'].filter(Boolean).join(' and ')}; install with:\n  apt-get install -y wrk nginx`);
    return 1;
  }

  const dir = await mkdtemp(join(tmpdir(), 'enjin-bench-'));
  const children: ChildProcess[] = [];
  const cleanup = async () => {
    await Promise.all(children.map(stopChild));
    await rm(dir, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const backendPort = await freePort();
    const proxyPort = await freePort();
    const backendDir = join(dir, 'backend');
    const proxyDir = join(dir, 'proxy');
    await mkdir(backendDir);
    await mkdir(proxyDir);
    await writeFile(
      join(backendDir, 'nginx.conf'),
      nginxConf(backendDir, backendPort, `location / { default_type text/plain; return 200 ${JSON.stringify(BODY)}; }`),
    );
    // The same forwarding work the router does: HTTP/1.1 keep-alive upstream, Host kept, X-Forwarded-* set.
    await writeFile(
      join(proxyDir, 'nginx.conf'),
      nginxConf(
        proxyDir,
        proxyPort,
        `location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
    }`,
        `upstream backend { server 127.0.0.1:${backendPort}; keepalive 128; }`,
      ),
    );
    children.push(startNginx(nginx, backendDir, join(backendDir, 'nginx.conf')));
    children.push(startNginx(nginx, proxyDir, join(proxyDir, 'nginx.conf')));

    const routerChild = spawn(process.execPath, [...(await compileRouter(dir)), String(backendPort), HOSTNAME, join(dir, 'router')], {
      cwd: repoDir,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(routerChild);
    const ready = await new Promise<{ port: number; pid: number }>((resolve, reject) => {
      let buf = '';
      routerChild.stdout!.on('data', (c: Buffer) => {
        buf += c.toString();
        const nl = buf.indexOf('\n');
        if (nl !== -1) resolve(JSON.parse(buf.slice(0, nl)) as { port: number; pid: number });
      });
      routerChild.once('exit', (code) => reject(new Error(`router process exited early (code ${code})`)));
    });

    await waitReady(backendPort, 'the nginx backend');
    await waitReady(proxyPort, 'nginx as a proxy');
    await waitReady(ready.port, 'the enjin router');

    const targets = [
      { target: 'direct' as const, port: backendPort },
      { target: 'nginx' as const, port: proxyPort },
      { target: 'router' as const, port: ready.port },
    ];
    const rows: Row[] = [];
    const rssIdle = rssKiB(ready.pid);
    for (const connections of CONNECTIONS) {
      for (const { target, port } of targets) {
        runWrk(wrk, port, connections, WARMUP_S);
        const r = runWrk(wrk, port, connections, DURATION_S);
        rows.push({ target, connections, ...r });
        console.error(`  ${target} c=${connections}: ${Math.round(r.rps)} req/s`);
      }
    }
    const rssAfter = rssKiB(ready.pid);

    const fmtMs = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
    const lines = [
      `enjin router benchmark: ${DURATION_S} s per run, wrk 1 thread, GET of a ${BODY.length}-byte static body, all on 127.0.0.1`,
      `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; nginx 1 worker; router 1 process`,
      '',
      'conns  target   req/s     p50        p99        errors  router/nginx  router/direct',
    ];
    for (const connections of CONNECTIONS) {
      const of = (t: Row['target']) => rows.find((r) => r.target === t && r.connections === connections)!;
      for (const target of ['direct', 'nginx', 'router'] as const) {
        const r = of(target);
        const ratios = target === 'router' ? `${(r.rps / of('nginx').rps).toFixed(2)}          ${(r.rps / of('direct').rps).toFixed(2)}` : '';
        lines.push(
          `${String(connections).padEnd(7)}${target.padEnd(9)}${String(Math.round(r.rps)).padEnd(10)}${fmtMs(r.p50ms).padEnd(11)}${fmtMs(r.p99ms).padEnd(11)}${String(r.errors + r.non2xx).padEnd(8)}${ratios}`,
        );
      }
    }
    lines.push('', `router RSS: ${(rssIdle.rss / 1024).toFixed(1)} MiB idle, ${(rssAfter.rss / 1024).toFixed(1)} MiB after the runs, peak ${(rssAfter.peak / 1024).toFixed(1)} MiB`);
    console.log(lines.join('\n'));

    await saveResults('router', {
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      settings: { durationS: DURATION_S, warmupS: WARMUP_S, connections: CONNECTIONS, wrkThreads: 1, body: BODY },
      rows,
      routerRssKiB: { idle: rssIdle.rss, after: rssAfter.rss, peak: rssAfter.peak },
    });
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

await runBench(main);
