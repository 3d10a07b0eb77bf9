// A process on the other end of an IPC bus for the bus tests. `relay`: hosts a MemoryBus and relays its channel onto
// it (the parent's role in `enjin up`). `client`: an IpcBus that answers `echo`, turns `ping` into `pong`, and exits
// when the channel disconnects (the router's role).
import { MemoryBus } from '../../src/bus/memory.ts';
import { IpcBus, relayBus } from '../../src/bus/ipc.ts';

const mode = process.argv[2];
if (mode === 'relay') {
  const bus = new MemoryBus();
  relayBus(bus, process);
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: process.pid });
} else if (mode === 'client') {
  const bus = new IpcBus(process);
  bus.handle('echo', async (data) => ({ echo: data, pid: process.pid }));
  bus.handle('hang', () => new Promise(() => {}));
  bus.subscribe('ping', (m) => bus.publish('pong', m.data));
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: process.pid });
} else {
  console.error('usage: bus-peer.ts relay|client');
  process.exit(2);
}
