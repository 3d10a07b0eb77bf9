// Runs the router of `enjin up` in a child process (router-process.ts) bridged to the parent's bus, and keeps it
// running: a crashed router is restarted with backoff on the same port, routing at once from its persisted table.
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import type { Bus } from '../bus/bus.ts';
import { relayBus } from '../bus/ipc.ts';
import type { RouterOptions } from '../router/router.ts';
import type { RouterProcessMessage } from './router-process.ts';

export type RouterProcessOptions = Omit<RouterOptions, 'bus'>;

const RESTART_FIRST_MS = 250;
const RESTART_MAX_MS = 10_000;
/** A router that ran this long before dying counts as healthy: the next restart starts from the shortest delay. */
const STABLE_AFTER_MS = 30_000;
/** The child lets requests finish for 5 s and exits by 8 s; after this it is killed. */
const STOP_KILL_AFTER_MS = 10_000;

/** Built (dist/*.js) or run from source with tsx (*.ts): the router entry sits beside this file either way. */
function entryPoint(): { file: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ext = extname(here);
  return { file: join(dirname(here), `router-process${ext}`), execArgv: ext === '.ts' ? ['--import', 'tsx'] : [] };
}

/** An error from the router's start, with its errno code (EADDRINUSE) so callers can explain it. */
class RouterStartError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message);
  }
}

export class RouterProcess {
  readonly #bus: Bus;
  readonly #options: RouterProcessOptions;
  readonly #log: Logger;
  #child: ChildProcess | null = null;
  #port = 0;
  #pid = 0;
  #maxConnections = 0;
  #startedAt = 0;
  #restartDelay = RESTART_FIRST_MS;
  #restartTimer: NodeJS.Timeout | null = null;
  #stopping = false;

  private constructor(bus: Bus, options: RouterProcessOptions, log: Logger) {
    this.#bus = bus;
    this.#options = options;
    this.#log = log;
  }

  /** Starts the router process and resolves once it listens; rejects (with the errno code) if it cannot. */
  static async start(bus: Bus, options: RouterProcessOptions, log: Logger = pino({ name: 'enjin-up' }, pino.destination(2))): Promise<RouterProcess> {
    const running = new RouterProcess(bus, options, log.child({ component: 'router-process' }));
    await running.#spawn();
    return running;
  }

  /** The port the router listens on; kept across restarts, so `--router-port 0` picks it once. */
  get port(): number {
    return this.#port;
  }

  /** The router's cap on client connections, derived in its own process from its own descriptor limit. */
  get maxConnections(): number {
    return this.#maxConnections;
  }

  /** The pid of the current router process (0 while it is being restarted). */
  get pid(): number {
    return this.#pid;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    const child = this.#child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (child.connected) child.send({ routerStop: true } satisfies RouterProcessMessage, (err) => err && child.kill('SIGTERM'));
    else child.kill('SIGTERM');
    const killer = setTimeout(() => {
      this.#log.warn({ routerPid: child.pid }, `router process did not stop within ${STOP_KILL_AFTER_MS} ms; killing it`);
      child.kill('SIGKILL');
    }, STOP_KILL_AFTER_MS);
    await exited;
    clearTimeout(killer);
  }

  #spawn(): Promise<void> {
    const { file, execArgv } = entryPoint();
    // Once a port is known, restarts take the same one.
    const options: RouterProcessOptions = { ...this.#options, port: this.#port || this.#options.port };
    const child = fork(file, [JSON.stringify(options)], {
      execArgv,
      // Its stdout goes to our stderr: `enjin up --json` prints one document on stdout.
      stdio: ['ignore', 2, 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.#child = child;
    // Before any message can arrive: the router's subscriptions come before its "ready".
    const relay = relayBus(this.#bus, child);
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      child.on('message', (m: unknown) => {
        const message = m as Partial<Record<string, unknown>>;
        if (typeof m !== 'object' || m === null) return;
        if ('routerReady' in message) {
          const info = (message as { routerReady: { port: number; pid: number; maxConnections: number } }).routerReady;
          ready = true;
          this.#port = info.port;
          this.#pid = info.pid;
          this.#maxConnections = info.maxConnections;
          this.#startedAt = Date.now();
          resolve();
        } else if ('routerFailed' in message) {
          const failed = (message as { routerFailed: { code?: string; message: string } }).routerFailed;
          reject(new RouterStartError(`the router could not start: ${failed.message}`, failed.code));
          // It exits on its own after saying so; this only makes sure of it.
          setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), 5_000).unref();
        }
      });
      child.on('error', (err) => {
        this.#log.error({ err }, 'router process error');
        if (!ready) reject(err);
      });
      child.once('exit', (code, signal) => {
        relay.close();
        if (this.#child === child) {
          this.#child = null;
          this.#pid = 0;
        }
        if (!ready) {
          reject(new RouterStartError(`the router process exited before listening (${signal ?? `code ${code}`})`, undefined));
          return;
        }
        if (!this.#stopping) this.#scheduleRestart(code, signal);
      });
    });
  }

  #scheduleRestart(code: number | null, signal: NodeJS.Signals | null): void {
    if (Date.now() - this.#startedAt >= STABLE_AFTER_MS) this.#restartDelay = RESTART_FIRST_MS;
    const delay = this.#restartDelay;
    this.#restartDelay = Math.min(delay * 2, RESTART_MAX_MS);
    this.#log.error({ code, signal, restartInMs: delay }, `the router process exited (${signal ?? `code ${code}`}); restarting it in ${delay} ms`);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.#spawn().then(
        () => this.#log.info({ routerPid: this.#pid, port: this.#port }, 'the router process is back'),
        (err: unknown) => {
          this.#log.error({ err }, 'restarting the router process failed');
          if (!this.#stopping) this.#scheduleRestart(null, null);
        },
      );
    }, delay);
  }
}
