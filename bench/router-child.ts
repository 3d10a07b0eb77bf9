// The router under benchmark, in its own process so it does not share an event loop with the driver or wrk.
// Usage: node --import tsx bench/router-child.ts <backendPort> <hostname> <dataDir>; prints one JSON line when ready.
import { MemoryBus } from '../src/bus/memory.ts';
import { subjects, type RouteTableUpdate } from '../src/core/messages.ts';
import { Router } from '../src/router/router.ts';

const [backendPort, hostname, dataDir] = process.argv.slice(2);
if (!backendPort || !hostname || !dataDir) {
  console.error('usage: router-child.ts <backendPort> <hostname> <dataDir>');
  process.exit(2);
}

const bus = new MemoryBus();
const routes: RouteTableUpdate = {
  incarnation: 'bench',
  seq: 0,
  hosts: { [hostname]: 'bench/bench/web' },
  services: { 'bench/bench/web': { key: 'bench/bench/web', upstreams: [{ instanceId: 'backend', host: '127.0.0.1', port: Number(backendPort) }] } },
};
// The table arrives the way it does in production: the router asks the controller over the bus.
bus.handle(subjects.routesRequest, async () => routes);
const router = new Router({ routerId: 'bench', bus, dataDir, port: 0, host: '127.0.0.1' });
await router.start();
while (router.inflight([]).seq !== 0) await new Promise((r) => setTimeout(r, 10));
process.stdout.write(`${JSON.stringify({ port: router.port, pid: process.pid })}\n`);

const stop = async () => {
  await router.stop();
  await bus.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
