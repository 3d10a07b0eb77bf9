// `enjin up`: controller and agent in this process, the router in a child process bridged to the same in-process bus,
// on the embedded store. This is the one place the CLI composes components; everything else goes through the API client.
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { Controller } from '../controller/controller.ts';
import { buildApi } from '../controller/api/server.ts';
import { Agent } from '../agent/agent.ts';
import { RouterProcess } from './up-router.ts';
import { openStore } from '../store/open.ts';
import { EnjinError } from '../core/errors.ts';

export interface UpOptions {
  dataDir: string;
  apiHost: string;
  apiPort: number;
  routerHost: string;
  routerPort: number;
  domain: string;
  databaseUrl?: string;
  portRange: [number, number];
}

export interface RunningEnjin {
  apiUrl: string;
  routerPort: number;
  token: string;
  credentialsFile: string;
  stop(): Promise<void>;
}

export async function up(opts: UpOptions): Promise<RunningEnjin> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore({ dataDir, databaseUrl: opts.databaseUrl });
  const bus = new MemoryBus();
  // Stopped in reverse: router, agent (and its instances), API, controller, bus, store.
  const started: Array<() => Promise<void>> = [async () => store.close(), async () => bus.close()];
  const stopAll = async () => {
    for (const stop of started.reverse()) await stop().catch(() => {});
  };
  try {
    const controller = await Controller.start({ store, bus, dataDir: join(dataDir, 'controller'), domain: opts.domain });
    started.push(() => controller.stop());
    const api = await buildApi(controller);
    try {
      await api.listen({ host: opts.apiHost, port: opts.apiPort });
    } catch (err) {
      throw portInUse(err, 'API', opts.apiPort, '--api-port');
    }
    started.push(() => api.close());
    const address = api.server.address();
    const apiPort = typeof address === 'object' && address ? address.port : opts.apiPort;
    const reachableHost = opts.apiHost === '0.0.0.0' || opts.apiHost === '::' ? '127.0.0.1' : opts.apiHost;
    controller.apiUrl = `http://${reachableHost}:${apiPort}`;

    const credentialsFile = join(dataDir, 'credentials.json');
    const token = await adminToken(controller, credentialsFile);
    writeCredentials(credentialsFile, { api: controller.apiUrl, token });

    const agent = new Agent({ nodeId: 'local', name: hostname(), bus, dataDir: join(dataDir, 'agent'), portRange: opts.portRange });
    await agent.start();
    started.push(() => agent.stop({ stopInstances: true }));

    // Its own process: API load on this event loop never delays a routed request, and a full router cannot take the
    // API's descriptors.
    let router: RouterProcess;
    try {
      router = await RouterProcess.start(bus, { routerId: 'local', dataDir: join(dataDir, 'router'), port: opts.routerPort, host: opts.routerHost });
    } catch (err) {
      throw portInUse(err, 'router', opts.routerPort, '--router-port');
    }
    started.push(() => router.stop());
    controller.ready = true;

    return { apiUrl: controller.apiUrl, routerPort: router.port, token, credentialsFile, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Keeps the admin token across restarts: a token in credentials.json that the store still knows is reused. */
async function adminToken(controller: Controller, file: string): Promise<string> {
  if (existsSync(file)) {
    try {
      const { token } = JSON.parse(readFileSync(file, 'utf8')) as { token?: string };
      if (token && (await controller.auth.check(token)) === 'admin') return token;
    } catch {
      // unreadable: a new token replaces it
    }
  }
  return controller.auth.create('admin (enjin up)');
}

function writeCredentials(file: string, creds: { api: string; token: string }): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

function portInUse(err: unknown, what: string, port: number, flag: string): unknown {
  if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') {
    return new EnjinError('port_in_use', `the ${what} port ${port} is already in use; stop what uses it or pick another with ${flag}`, { status: 409 });
  }
  return err;
}
