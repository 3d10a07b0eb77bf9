// `enjin up`: controller and agent in this process, the router in a child process bridged to the same in-process bus,
// on the embedded store. This is the one place the CLI composes components; everything else goes through the API client.
import { chmodSync, mkdirSync } from 'node:fs';
import { availableParallelism, hostname, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { Controller } from '../controller/controller.ts';
import { buildApi } from '../controller/api/server.ts';
import { Agent } from '../agent/agent.ts';
import { ProcessDriver } from '../agent/drivers/process.ts';
import { RouterProcess } from './up-router.ts';
import { openStore } from '../store/open.ts';
import { readNofileLimit } from '../process/fd-limit.ts';
import { EnjinError } from '../core/errors.ts';
import { componentLogger } from '../log/logger.ts';
import { adminToken, writeCredentials } from './roles/credentials.ts';

const log = componentLogger('up');

export interface UpOptions {
  dataDir: string;
  apiHost: string;
  apiPort: number;
  routerHost: string;
  routerPort: number;
  domain: string;
  databaseUrl?: string;
  portRange: [number, number];
  /** default: derived by the router from its descriptor limit */
  routerMaxConnections?: number;
  /** the agent's free-disk threshold (bytes) for versions and logs */
  minFreeDiskBytes?: number;
  /** how long events are kept (default 7 days) */
  eventRetentionMs?: number;
  /** memory limit of each instance, bytes; null: none; absent: defaultInstanceMemory() */
  instanceMemoryBytes?: number | null;
  /** one-line notices for the operator (stderr); default: written to stderr */
  warn?: (line: string) => void;
}

/**
 * 1 GiB, or half the host's memory if that is less: room for a typical web app (node, python: 100-500 MB) with its
 * caches, while one runaway app cannot take the host, and enjin, down with it.
 */
export function defaultInstanceMemory(): number {
  return Math.min(1024 ** 3, Math.floor(totalmem() / 2));
}

/** '512M', '1G', '1.5g', '800000k', a number of bytes, or 'off'/'0' for no limit. */
export function parseMemorySize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (/^\s*(off|none)\s*$/i.test(text)) return null;
  if (!m) throw new EnjinError('invalid_request', `--instance-memory must be a size such as 512M or 2G, or off (got ${JSON.stringify(text)})`);
  const bytes = Math.floor(Number(m[1]) * 1024 ** ' kmgt'.indexOf(m[2].toLowerCase() || ' '));
  if (bytes === 0) return null;
  // Below this an app cannot even start its runtime; the kernel then kills it at once, which reads as a crash loop.
  if (bytes < 16 * 1024 ** 2) throw new EnjinError('invalid_request', `--instance-memory must be at least 16M, or off (got ${text})`);
  return bytes;
}

export interface RunningEnjin {
  apiUrl: string;
  routerPort: number;
  /** client connections the router accepts */
  routerMaxConnections: number;
  token: string;
  credentialsFile: string;
  stop(): Promise<void>;
}

export async function up(opts: UpOptions): Promise<RunningEnjin> {
  const dataDir = resolve(opts.dataDir);
  const warn = opts.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  const root = process.getuid?.() === 0;
  // Private to enjin; as root, apps (another user) may only pass through it to their own version directory.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, root ? 0o711 : 0o700);
  if (!root) warn(`note: enjin is not running as root, so apps run as the current user (uid ${process.getuid?.()}) and can read what it can, including ${join(dataDir, 'credentials.json')}`);
  const store = await openStore({ dataDir, databaseUrl: opts.databaseUrl });
  const bus = new MemoryBus();
  // Stopped in reverse: router, agent (and its instances), API, controller, bus, store.
  const started: Array<() => Promise<void>> = [async () => store.close(), async () => bus.close()];
  const stopAll = async () => {
    for (const stop of started.reverse()) await stop().catch((err: unknown) => log.error({ err }, 'a component failed to stop; stopping the rest'));
  };
  try {
    const controller = await Controller.start({ store, bus, dataDir: join(dataDir, 'controller'), domain: opts.domain, eventRetentionMs: opts.eventRetentionMs });
    started.push(() => controller.stop());
    const api = await buildApi(controller);
    try {
      await api.listen({ host: opts.apiHost, port: opts.apiPort });
    } catch (err) {
      throw portInUse(err, 'API', opts.apiPort, '--api-port');
    }
    started.push(() => api.close());
    // Its own cap, well inside the descriptors the router leaves free, so the API still answers when the router is full.
    api.server.maxConnections = apiMaxConnections(readNofileLimit().soft);
    const address = api.server.address();
    const apiPort = typeof address === 'object' && address ? address.port : opts.apiPort;
    const reachableHost = opts.apiHost === '0.0.0.0' || opts.apiHost === '::' ? '127.0.0.1' : opts.apiHost;
    controller.apiUrl = `http://${reachableHost}:${apiPort}`;

    const credentialsFile = join(dataDir, 'credentials.json');
    const token = await adminToken(controller.auth, credentialsFile, 'admin (enjin up)');
    writeCredentials(credentialsFile, { api: controller.apiUrl, token });

    const driver = new ProcessDriver({ memoryLimitBytes: opts.instanceMemoryBytes === undefined ? defaultInstanceMemory() : opts.instanceMemoryBytes });
    for (const line of driver.warnings) warn(`warning: ${line}`);
    const capacity = { cpus: availableParallelism(), memoryBytes: totalmem(), ports: opts.portRange[1] - opts.portRange[0] + 1 };
    const agent = new Agent({ nodeId: 'local', name: hostname(), bus, dataDir: join(dataDir, 'agent'), portRange: opts.portRange, driver, minFreeDiskBytes: opts.minFreeDiskBytes, capacity });
    await agent.start();
    for (const line of agent.notices) warn(`note: ${line}`);
    started.push(() => agent.stop({ stopInstances: true }));

    // Its own process: API load on this event loop never delays a routed request, and a full router cannot take the
    // API's descriptors.
    let router: RouterProcess;
    try {
      router = await RouterProcess.start(bus, {
        routerId: 'local', dataDir: join(dataDir, 'router'), port: opts.routerPort, host: opts.routerHost,
        limits: { maxConnections: opts.routerMaxConnections },
      });
    } catch (err) {
      throw portInUse(err, 'router', opts.routerPort, '--router-port');
    }
    started.push(() => router.stop());
    controller.routerPort = router.port;
    controller.ready = true;

    return { apiUrl: controller.apiUrl, routerPort: router.port, routerMaxConnections: router.maxConnections, token, credentialsFile, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** An admin API needs few connections: a twentieth of the descriptors, between 16 and 512. */
function apiMaxConnections(softLimit: number): number {
  return Math.max(16, Math.min(512, Math.floor(softLimit / 20)));
}

function portInUse(err: unknown, what: string, port: number, flag: string): unknown {
  if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') {
    return new EnjinError('port_in_use', `the ${what} port ${port} is already in use; stop what uses it or pick another with ${flag}`, { status: 409 });
  }
  return err;
}
