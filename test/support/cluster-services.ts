// The cluster's engines for the fault suite: a private PostgreSQL and a private nats-server, each stoppable and
// restartable on the same port and data, so outages can be made and healed; both removed by destroy().
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { join } from 'node:path';

const STEP_TIMEOUT_MS = 180_000;

/** A free TCP port on `host` (bound and released; the caller retries if someone takes it meanwhile). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port. */
export async function waitForPort(host: string, port: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = tcpConnect(port, host);
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepts connections on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl'))).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a)) : [];
  if (versions.length === 0) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; install the Debian package `postgresql`');
  return join(root, versions[0], 'bin');
}

/** A PostgreSQL server run as the `postgres` OS user (the suite runs as root; initdb refuses root). */
export class PostgresServer {
  private stopped = true;
  private constructor(readonly dir: string, readonly port: number, private readonly bin: string) {}

  /** postgres://postgres@127.0.0.1:PORT/enjin — controllers run in the root namespace, so loopback reaches it. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/enjin`;
  }

  /** `dir`: a new directory whose parents the postgres OS user can enter (under the host network's run directory). */
  static async start(dir: string): Promise<PostgresServer> {
    const bin = postgresBin();
    mkdirSync(dir, { recursive: true });
    const id = (flag: string): number => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, id('-u'), id('-g'));
    const pg = new PostgresServer(dir, await freePort(), bin);
    try {
      await pg.pgRun('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions']);
      await pg.resume();
      await pg.pgRun('createdb', ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'enjin']);
    } catch (err) {
      await pg.destroy();
      throw err;
    }
    return pg;
  }

  private pgRun(cmd: string, args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn('runuser', ['-u', 'postgres', '--', join(this.bin, cmd), ...args], { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      child.stderr.on('data', (d: Buffer) => (out += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS + 30_000);
      child.on('error', (err) => { clearTimeout(timer); reject(err); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out.trim()}\n${this.log()}`));
      });
    });
  }

  log(): string {
    try { return readFileSync(join(this.dir, 'server.log'), 'utf8').slice(-3000); } catch { return ''; }
  }

  /** Starts (or starts again) the server on its port. */
  async resume(): Promise<void> {
    const options = [`-p ${this.port}`, `-k '${this.dir}'`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off', '-c max_connections=200'].join(' ');
    await this.pgRun('pg_ctl', ['-D', join(this.dir, 'data'), '-l', join(this.dir, 'server.log'), '-o', options, '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'start']);
    this.stopped = false;
  }

  /** A clean, fast shutdown: sessions are ended, new connections refused, as when an operator stops the server. */
  async pause(): Promise<void> {
    if (this.stopped) return;
    await this.pgRun('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'stop']);
    this.stopped = true;
  }

  async destroy(): Promise<void> {
    try {
      if (existsSync(join(this.dir, 'data', 'postmaster.pid'))) {
        spawnSync('runuser', ['-u', 'postgres', '--', join(this.bin, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop'], { cwd: this.dir, stdio: 'ignore', timeout: 60_000 });
      }
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A nats-server with JetStream listening on one address (the bridge's, so every host namespace reaches it). */
export class NatsServer {
  private child: ChildProcess | null = null;
  private output = '';
  private constructor(readonly host: string, readonly port: number, readonly dir: string) {}

  get url(): string {
    return `nats://${this.host}:${this.port}`;
  }

  static async start(host: string, dir: string): Promise<NatsServer> {
    mkdirSync(dir, { recursive: true });
    const nats = new NatsServer(host, await freePort(host), dir);
    try {
      await nats.resume();
    } catch (err) {
      await nats.destroy();
      throw err;
    }
    return nats;
  }

  log(): string {
    return this.output.slice(-3000);
  }

  async resume(): Promise<void> {
    if (this.child) return;
    const child = spawn('/usr/sbin/nats-server', ['-a', this.host, '-p', String(this.port), '-js', '-sd', this.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.output += d));
    child.stderr!.on('data', (d: Buffer) => (this.output += d));
    const exited = new Promise<never>((_, reject) => child.once('exit', (code, sig) => reject(new Error(`nats-server exited (${sig ?? code}) before accepting:\n${this.log()}`))));
    exited.catch(() => undefined);
    await Promise.race([waitForPort(this.host, this.port), exited]);
  }

  /** Stops the server the way an operator would (SIGTERM), waiting until it is gone. */
  async pause(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }

  async destroy(): Promise<void> {
    await this.pause();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
