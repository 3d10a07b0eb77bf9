// Helpers shared by the router's tests: real upstream servers, a router on a real port, raw-socket HTTP exchanges.
import type { TestContext } from 'node:test';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { subjects, type RouteTableUpdate, type RouteTimeouts, type Upstream } from '../core/messages.ts';
import { Router, type RouterOptions } from './router.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export async function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return (server.address() as AddressInfo).port;
}

/** An upstream HTTP server; closed when the test ends. */
export async function upstream(t: TestContext, handler: Handler): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  const port = await listen(server);
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port };
}

export const up = (instanceId: string, port: number): Upstream => ({ instanceId, host: '127.0.0.1', port });

export function table(
  seq: number,
  hosts: Record<string, string>,
  services: Record<string, Upstream[]>,
  timeouts?: Record<string, RouteTimeouts>,
): RouteTableUpdate {
  return {
    incarnation: 'inc-1',
    seq,
    hosts,
    services: Object.fromEntries(
      Object.entries(services).map(([key, upstreams]) => [key, timeouts?.[key] ? { key, upstreams, timeouts: timeouts[key] } : { key, upstreams }]),
    ),
  };
}

/** A router whose bus answers the table request with `initial`; stopped when the test ends. */
export async function startRouter(t: TestContext, initial: RouteTableUpdate, limits: RouterOptions['limits'] = {}): Promise<Router> {
  const bus = new MemoryBus();
  const dataDir = await mkdtemp(join(tmpdir(), 'enjin-router-'));
  bus.handle(subjects.routesRequest, async () => initial);
  const router = new Router({ routerId: 'r1', bus, dataDir, port: 0, host: '127.0.0.1', limits });
  await router.start();
  t.after(async () => {
    await router.stop();
    await bus.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await waitFor(() => router.inflight([]).seq === initial.seq, 'the initial table');
  return router;
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A raw TCP connection to the router from a chosen loopback address (127.0.0.2 is "another client"). */
export function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/**
 * Sends raw bytes and collects everything the router answers until it closes the connection (or `limitMs` passes).
 * `text` is the whole answer as Latin-1; `status` the first status code in it (0 if none).
 */
export async function rawExchange(port: number, bytes: string | Buffer, opts: { limitMs?: number; localAddress?: string; endAfterMs?: number } = {}): Promise<{ text: string; status: number; closed: boolean }> {
  const s = await rawConnect(port, opts.localAddress);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      s.destroy();
      resolve({ text, status: m ? Number(m[1]) : 0, closed });
    };
    const timer = setTimeout(finish, opts.limitMs ?? 10_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.write(bytes);
  });
}

/** A plain GET through the router from a chosen loopback address; resolves with status and body, or rejects. */
export function get(port: number, host: string, opts: { path?: string; localAddress?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress: opts.localAddress ?? '127.0.0.1' });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('GET timed out'));
    }, opts.timeoutMs ?? 10_000);
    s.on('connect', () => s.write(`GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!m) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(m[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}
