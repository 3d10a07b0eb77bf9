// A private nats-server for tests: its own free port and JetStream directory, killed by pid when the test is done.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './cluster-services.ts';

export interface TestNats {
  /** nats://127.0.0.1:PORT, with user:password@ when the server was started with them */
  url: string;
  port: number;
  /** stops the server (kills the pid it started); restart() may bring it back; the directory goes at exit */
  stop(): Promise<void>;
  /** starts it again on the same port and directory, so clients reconnect to it */
  restart(): Promise<void>;
}

export interface StartNatsOptions {
  /** require this user and password from clients */
  user?: string;
  pass?: string;
  /** serve TLS only, with this certificate and key (PEM files) */
  tls?: { certFile: string; keyFile: string };
}

const BIN = '/usr/sbin/nats-server';
/** Generous: the machine running the tests may be loaded. */
const START_TIMEOUT_MS = 30_000;

export async function startNats(opts: StartNatsOptions = {}): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-nats-'));
  let child: ChildProcess | null = null;
  let port = 0;
  let log = '';

  const killAtExit = (): void => {
    // The test process is ending without stop(): do not leave a server behind.
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAtExit);

  const launch = async (): Promise<void> => {
    const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir];
    if (opts.user !== undefined) args.push('--user', opts.user, '--pass', opts.pass ?? '');
    if (opts.tls !== undefined) args.push('--tls', '--tlscert', opts.tls.certFile, '--tlskey', opts.tls.keyFile);
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    log = '';
    proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<never>((_, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code, signal) => reject(new Error(`nats-server exited (${signal ?? `code ${code}`}) before accepting:\n${log}`)));
    });
    exited.catch(() => undefined);
    await Promise.race([waitUntilAccepting(port), exited]);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = null;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  };

  // Another process may take the free port before nats-server binds it: try again with a new one.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      await stop();
      if (attempt >= 3) {
        process.removeListener('exit', killAtExit);
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const auth = opts.user === undefined ? '' : `${encodeURIComponent(opts.user)}:${encodeURIComponent(opts.pass ?? '')}@`;
  return {
    url: `${opts.tls ? 'tls' : 'nats'}://${auth}127.0.0.1:${port}`,
    port,
    stop: async () => {
      await stop();
    },
    restart: async () => {
      await stop();
      await launch();
    },
  };
}

/** Resolves once the server greets a TCP client with its INFO line. */
async function waitUntilAccepting(port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const greeted = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1');
      const done = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(2_000, () => done(false));
      socket.once('data', (d: Buffer) => done(d.toString().startsWith('INFO')));
      socket.once('error', () => done(false));
    });
    if (greeted) return;
    if (Date.now() > deadline) throw new Error(`nats-server on port ${port} did not accept connections within ${START_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
