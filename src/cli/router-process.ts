// The router's own process in `enjin up` (forked by up-router.ts): its request path never shares an event loop, a heap
// or a descriptor table with the controller. It reaches the parent's bus over the IPC channel and exits when that
// channel goes away, so a killed `enjin up` never leaves a router holding its port.
import { IpcBus } from '../bus/ipc.ts';
import { raiseNofileLimit } from '../process/fd-limit.ts';
import { Router, type RouterOptions } from '../router/router.ts';

/** How long a stop may take before the process exits anyway (the router's own grace for requests is 5 s). */
const STOP_LIMIT_MS = 8_000;

/** Messages between up-router.ts and this process, beside the bus frames on the same channel. */
export type RouterProcessMessage =
  | { routerReady: { port: number; pid: number; maxConnections: number } }
  | { routerFailed: { code: string | undefined; message: string } }
  | { routerStop: true };

type ChildOptions = Omit<RouterOptions, 'bus'>;

function send(message: RouterProcessMessage): void {
  process.send?.(message, undefined, undefined, (err) => {
    if (err) process.emitWarning(`router process could not tell enjin up: ${err.message}`);
  });
}

async function main(): Promise<void> {
  if (process.send === undefined) {
    process.stderr.write('router-process is started by `enjin up`, not by hand\n');
    process.exit(2);
  }
  // Inherited from enjin up, which raised it already; checked again here since the router's cap is derived from it.
  raiseNofileLimit();
  const options = JSON.parse(process.argv[2] ?? '{}') as ChildOptions;
  const bus = new IpcBus(process);
  const router = new Router({ ...options, bus });

  let stopping = false;
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      process.stderr.write(`router process: stopping (${why}) took over ${STOP_LIMIT_MS} ms; exiting anyway\n`);
      process.exit(1);
    }, STOP_LIMIT_MS).unref();
    router
      .stop()
      .catch((err: unknown) => process.stderr.write(`router process: stopping failed: ${(err as Error).message}\n`))
      .finally(() => void bus.close().then(() => process.exit(0)));
  };
  process.on('message', (m: unknown) => {
    if (typeof m === 'object' && m !== null && 'routerStop' in m) stop('asked by enjin up');
  });
  // The parent is gone (killed, crashed): nobody will restart or stop this router, so it must not outlive it.
  process.on('disconnect', () => stop('enjin up went away'));
  // A terminal's Ctrl-C reaches the whole process group: enjin up stops the router in its own order.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => stop('SIGTERM'));

  try {
    await router.start();
  } catch (err) {
    send({ routerFailed: { code: (err as NodeJS.ErrnoException).code, message: (err as Error).message } });
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  send({ routerReady: { port: router.port, pid: process.pid, maxConnections: router.limits.maxConnections } });
}

await main();
