import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { PortAllocator, portIsFree } from './ports.ts';

async function listen(host: string): Promise<Server & { port: number }> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  return Object.assign(s, { port: (s.address() as { port: number }).port });
}

test('a port something listens on (loopback or wildcard) is not free', async () => {
  const loop = await listen('127.0.0.1');
  const any = await listen('0.0.0.0');
  try {
    assert.equal(await portIsFree(loop.port), false);
    assert.equal(await portIsFree(any.port), false);
  } finally {
    loop.close();
    any.close();
  }
});

test('ports are handed out from the range, never twice, skipping busy ones, and only the owner releases one', async () => {
  const busy = await listen('127.0.0.1');
  try {
    await assert.rejects(new PortAllocator([busy.port, busy.port]).allocate('x'), (e: Error & { code?: string }) => e.code === 'no_free_port');
    const base = 20000 + Math.floor(Math.random() * 9000);
    const ports = new PortAllocator([base, base + 20]);
    const got = await Promise.all(['a', 'b', 'c', 'd'].map((id) => ports.allocate(id)));
    assert.equal(new Set(got).size, 4, 'concurrent allocations never share a port');
    for (const p of got) assert.ok(p >= base && p <= base + 20);
    ports.release(got[0], 'b');
    assert.equal(ports.owner(got[0]), 'a', 'only the owner releases a port');
    ports.release(got[0], 'a');
    assert.equal(ports.owner(got[0]), undefined);
    ports.claim(got[0], 'z');
    const more = await Promise.all(Array.from({ length: 5 }, (_, i) => ports.allocate(`m${i}`)));
    assert.ok(!more.some((p) => got.includes(p)), 'claimed and allocated ports are not handed out again');
  } finally {
    busy.close();
  }
});

test('a restart keeps its port while it is free, and gets another once something took it', async () => {
  const squatter = await listen('127.0.0.1');
  const base = squatter.port;
  squatter.close();
  const ports = new PortAllocator([base, base + 20]);
  const first = await ports.allocate('inst_a');
  assert.equal(await ports.forLaunch('inst_a', first), first, 'free and ours: kept');
  // Another instance's port is never taken over, even if nothing listens on it right now.
  const other = await ports.allocate('inst_b');
  assert.notEqual(await ports.forLaunch('inst_c', other), other);
  // Something outside enjin listens on it while the instance is down: a new port, the old one released.
  const thief = createServer();
  await new Promise<void>((r) => thief.listen(first, '127.0.0.1', () => r()));
  try {
    const next = await ports.forLaunch('inst_a', first);
    assert.notEqual(next, first);
    assert.equal(ports.owner(first), undefined);
    assert.equal(ports.owner(next), 'inst_a');
  } finally {
    thief.close();
  }
});
