// A process on the other end of an IPC bus for the bus tests. `relay`: hosts a MemoryBus and relays its channel onto
// it (the parent's role in `enjin up`). `signed-relay`: the same over a SignedBus whose identity is `relay`, so what
// crosses the channel carries a verified sender. `client`: an IpcBus that answers `echo`, turns `ping` into `pong`,
// and exits when the channel disconnects (the router's role).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../../src/bus/memory.ts';
import { IpcBus, relayBus } from '../../src/bus/ipc.ts';
import { SignedBus } from '../../src/bus/signing.ts';
import { loadOrCreateIdentity, StaticKeyRing } from '../../src/bus/identity.ts';

const mode = process.argv[2];
if (mode === 'relay') {
  const bus = new MemoryBus();
  relayBus(bus, process);
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: process.pid });
} else if (mode === 'signed-relay') {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-bus-peer-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const identity = await loadOrCreateIdentity(dir, { id: 'relay' });
  const bus = new SignedBus(new MemoryBus(), { identity, keyring: new StaticKeyRing([[identity.id, identity.publicKey]]) });
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
  console.error('usage: bus-peer.ts relay|signed-relay|client');
  process.exit(2);
}
