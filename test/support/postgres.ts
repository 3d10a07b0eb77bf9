// A private PostgreSQL server for tests: its own temp dir, port and socket, thrown away on stop (or a fresh database on ENJIN_TEST_DATABASE_URL).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './cluster-services.ts';

export interface TestPostgres {
  /** a database nobody else uses, owned by a superuser */
  url: string;
  /** another fresh, empty database on the same server, dropped by stop() */
  createDatabase(): Promise<string>;
  /** stops the server and removes its directory (or drops the databases made on ENJIN_TEST_DATABASE_URL) */
  stop(): Promise<void>;
  /**
   * Outage tests: `halt` stops the server (fast shutdown: every session ends) and keeps its data; `resume` starts it
   * again on the same port. Absent on ENJIN_TEST_DATABASE_URL (a shared server is not ours to stop).
   */
  halt?(): Promise<void>;
  resume?(): Promise<void>;
}

/** Generous: initdb and startup can take tens of seconds on a loaded 2-core CI machine. */
const STEP_TIMEOUT_MS = 180_000;

export async function startPostgres(): Promise<TestPostgres> {
  const external = process.env.ENJIN_TEST_DATABASE_URL;
  return external ? useExistingServer(external) : startPrivateServer();
}

async function useExistingServer(adminUrl: string): Promise<TestPostgres> {
  const created: string[] = [];
  const createDatabase = async (): Promise<string> => {
    const name = `enjin_test_${process.pid}_${randomBytes(4).toString('hex')}`;
    await withClient(adminUrl, (c) => c.query(`create database ${name}`));
    created.push(name);
    return urlWithDatabase(adminUrl, name);
  };
  const url = await createDatabase();
  return {
    url,
    createDatabase,
    async stop() {
      // `with (force)` (PostgreSQL 13+) ends sessions a failed test left open.
      await withClient(adminUrl, async (c) => {
        for (const name of created.splice(0)) await c.query(`drop database if exists ${name} with (force)`);
      });
    },
  };
}

async function startPrivateServer(): Promise<TestPostgres> {
  const bin = findPostgresBin();
  const asRoot = process.getuid?.() === 0;
  // As root, TMPDIR may sit somewhere the postgres user cannot enter; /tmp it can.
  const dir = mkdtempSync(join(asRoot ? '/tmp' : tmpdir(), 'enjin-pg-'));
  const dataDir = join(dir, 'data');
  // initdb and postgres refuse to run as root; the server runs as the `postgres` OS user and owns its directory.
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]): Promise<void> =>
    runCommand(asRoot ? 'runuser' : join(bin, cmd), asRoot ? ['-u', 'postgres', '--', join(bin, cmd), ...args] : args, dir);

  let port = 0;
  let stopped = false;
  const cleanupAtExit = (): void => {
    // The test process is ending without stop(): do not leave a server behind.
    spawnSync(asRoot ? 'runuser' : join(bin, 'pg_ctl'), [...(asRoot ? ['-u', 'postgres', '--', join(bin, 'pg_ctl')] : []), '-D', dataDir, '-m', 'immediate', '-w', 'stop'], {
      cwd: dir,
      stdio: 'ignore',
    });
    rmSync(dir, { recursive: true, force: true });
  };
  // A test run cut short (Ctrl-C, the runner's timeout) ends by a signal, which skips 'exit': clean up, then die of it.
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (signal: NodeJS.Signals): void => {
    detach();
    cleanupAtExit();
    process.kill(process.pid, signal);
  };
  const detach = (): void => {
    process.removeListener('exit', cleanupAtExit);
    for (const s of signals) process.removeListener(s, onSignal);
  };
  process.once('exit', cleanupAtExit);
  for (const s of signals) process.once(s, onSignal);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    detach();
    try {
      if (existsSync(join(dataDir, 'postmaster.pid'))) {
        // immediate: the data is thrown away, so there is nothing to checkpoint.
        await run('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'stop']);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  let options = '';
  const start = (): Promise<void> =>
    run('pg_ctl', ['-D', dataDir, '-l', join(dir, 'server.log'), '-o', options, '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'start']);
  const halt = async (): Promise<void> => {
    await run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', String(STEP_TIMEOUT_MS / 1000), 'stop']);
  };
  const resume = async (): Promise<void> => {
    await start();
    await waitUntilAccepting(`postgres://postgres@127.0.0.1:${port}/postgres`);
  };

  try {
    await run('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync', '--no-instructions']);
    // Another process may grab the free port we found before postgres binds it: try again with a new one.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      options = [
        `-p ${port}`,
        `-k '${dir}'`,
        '-c listen_addresses=127.0.0.1',
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
        '-c max_connections=100',
      ].join(' ');
      try {
        await start();
        break;
      } catch (err) {
        if (attempt >= 3) throw new Error(`${(err as Error).message}\nserver log:\n${readLog(dir)}`);
      }
    }
    const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
    await waitUntilAccepting(adminUrl);
    const created: string[] = [];
    const createDatabase = async (): Promise<string> => {
      const name = `enjin_test_${randomBytes(4).toString('hex')}`;
      await withClient(adminUrl, (c) => c.query(`create database ${name}`));
      created.push(name);
      return urlWithDatabase(adminUrl, name);
    };
    return { url: await createDatabase(), createDatabase, stop, halt, resume };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

function findPostgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl')) && existsSync(join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions.length === 0) {
    throw new Error(
      'no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; install the Debian package `postgresql` (apt-get install postgresql), or set ENJIN_TEST_DATABASE_URL to a server the tests may create databases on',
    );
  }
  return join(root, versions[0], 'bin');
}

function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string): number => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error('tests run as root but there is no `postgres` OS user to run PostgreSQL as; install the Debian package `postgresql`');
    return Number(r.stdout.trim());
  };
  return { uid: id('-u'), gid: id('-g') };
}

function runCommand(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // cwd is the server's own directory: the postgres user may not be able to enter the caller's.
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS + 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${output.trim()}`));
    });
  });
}

/** pg_ctl -w already waits for readiness; this also proves a TCP client gets in, which is what the tests do. */
async function waitUntilAccepting(url: string): Promise<void> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  for (;;) {
    try {
      await withClient(url, (c) => c.query('select 1'));
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL at ${url} did not accept connections: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 30_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function urlWithDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'server.log'), 'utf8').slice(-4000);
  } catch {
    return '(no log)';
  }
}
