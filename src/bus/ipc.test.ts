import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IpcBus, relayBus } from './ipc.ts';
import { MemoryBus } from './memory.ts';
import { busConformance } from './conformance.ts';
import type { EnjinError } from '../core/errors.ts';

const PEER = fileURLToPath(new URL('../../test/support/bus-peer.ts', import.meta.url));

/** `attach` runs before any message can arrive, as a relay must: the child's first frames come before its "ready". */
async function startPeer(mode: 'relay' | 'signed-relay' | 'client', attach?: (child: ChildProcess) => void): Promise<ChildProcess> {
  const child = fork(PEER, [mode], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
  attach?.(child);
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bus peer exited with ${code}`)));
    const onMessage = (m: unknown) => {
      if (typeof m === 'object' && m !== null && 'ready' in m) {
        child.off('message', onMessage);
        resolve();
      }
    };
    child.on('message', onMessage);
  });
  child.removeAllListeners('exit');
  return child;
}

async function stopPeer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// Two IpcBus clients of a relay in another process: everything crosses a real IPC channel twice.
busConformance('IpcBus over a relay', async () => {
  const child = await startPeer('relay');
  const bus = new IpcBus(child);
  const peer = new IpcBus(child);
  return {
    bus,
    peer,
    close: async () => {
      await bus.close();
      await peer.close();
      await stopPeer(child);
    },
  };
});

// The same over a relay whose bus signs and verifies: the verified sender crosses the channel to the clients.
busConformance('IpcBus over a relay onto a SignedBus', async () => {
  const child = await startPeer('signed-relay');
  const bus = new IpcBus(child);
  const peer = new IpcBus(child);
  return {
    bus,
    peer,
    senders: { bus: 'relay', peer: 'relay' },
    close: async () => {
      await bus.close();
      await peer.close();
      await stopPeer(child);
    },
  };
});

test('a parent bus reaches the child: requests answered there, its publishes seen here', async () => {
  const bus = new MemoryBus();
  let relay: ReturnType<typeof relayBus> | undefined;
  const child = await startPeer('client', (c) => (relay = relayBus(bus, c)));
  try {
    assert.deepEqual(await bus.request('echo', { a: 1 }), { echo: { a: 1 }, pid: child.pid });
    const pong = new Promise((resolve) => bus.subscribe('pong', (m) => resolve(m.data)));
    bus.publish('ping', { n: 7 });
    assert.deepEqual(await pong, { n: 7 });
  } finally {
    relay?.close();
    await stopPeer(child);
    await bus.close();
  }
});

test('when the child dies, its calls in flight fail at once and its subjects are released', async () => {
  const bus = new MemoryBus();
  const child = await startPeer('client', (c) => relayBus(bus, c));
  try {
    const hanging = bus.request('hang', null, { timeoutMs: 60_000 });
    const rejected = assert.rejects(hanging, (e: EnjinError) => e.code === 'bus_no_responder' && e.status === 503);
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGKILL');
    await rejected;
    await assert.rejects(bus.request('echo', null), (e: EnjinError) => e.code === 'bus_no_responder');
  } finally {
    await stopPeer(child);
    await bus.close();
  }
});

test('the child side notices the parent going away: its bus closes and the child exits', async () => {
  const child = await startPeer('client');
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.disconnect();
  assert.equal(await exited, 0);
});

test('a request from the child to a parent that never answers times out on the child side', async () => {
  // In this process the IpcBus is the child's side; the "parent" (the relay process) has no responder that answers.
  const child = await startPeer('relay');
  const bus = new IpcBus(child);
  try {
    await assert.rejects(bus.request('nobody', null, { timeoutMs: 200 }), (e: EnjinError) => e.code === 'bus_no_responder');
    child.kill('SIGSTOP');
    await assert.rejects(bus.request('nobody', null, { timeoutMs: 300 }), (e: EnjinError) => e.code === 'bus_timeout' && e.status === 504);
    child.kill('SIGCONT');
    await bus.close();
    await assert.rejects(bus.request('nobody', null), (e: EnjinError) => e.code === 'bus_closed');
  } finally {
    child.kill('SIGCONT');
    await stopPeer(child);
  }
});
