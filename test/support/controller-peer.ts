// A controller in a process of its own, on a PostgreSQL URL, with one simulated node on its in-process bus: the
// leader a test can kill -9. Prints one JSON line ({ id, api }) once its API listens.
import { join } from 'node:path';
import { MemoryBus } from '../../src/bus/memory.ts';
import { Controller } from '../../src/controller/controller.ts';
import { buildApi } from '../../src/controller/api/server.ts';
import { openStore } from '../../src/store/open.ts';
import { SimulatedNode } from './simulated-node.ts';

const [databaseUrl, dataDir, controllerId] = process.argv.slice(2);
if (!databaseUrl || !dataDir || !controllerId) {
  console.error('usage: controller-peer.ts DATABASE_URL DATA_DIR CONTROLLER_ID');
  process.exit(2);
}
const store = await openStore({ dataDir, databaseUrl });
const bus = new MemoryBus();
const controller = await Controller.start({ store, bus, dataDir: join(dataDir, 'controller'), domain: 'localhost', reconcileIntervalMs: 60_000, controllerId });
const api = await buildApi(controller);
await api.listen({ host: '127.0.0.1', port: 0 });
controller.apiUrl = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
controller.ready = true;
const node = new SimulatedNode(bus, 'node_peer');
node.full([]);
// The parent ends this process with SIGKILL (the point of it) or by closing stdin.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
console.log(JSON.stringify({ id: controller.leadership.id, api: controller.apiUrl }));
