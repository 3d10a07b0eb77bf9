// Port allocation for instances that listen: one port per live instance, checked free on the machine before it is handed out.
import { createServer } from 'node:net';
import { EnjinError } from '../core/errors.ts';

/** True if nothing listens on `port` (IPv4 wildcard, and IPv6 wildcard where the machine has IPv6). */
export async function portIsFree(port: number): Promise<boolean> {
  // Binding the wildcard conflicts with a listener on any address of that family, including 127.0.0.1.
  if (!(await canBind(port, '0.0.0.0'))) return false;
  return canBind(port, '::', true);
}

function canBind(port: number, host: string, ipv6 = false): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) => {
      // A machine without IPv6 cannot host an IPv6 listener either.
      resolve(ipv6 && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL'));
    });
    server.listen({ port, host, exclusive: true, ipv6Only: ipv6 }, () => server.close(() => resolve(true)));
  });
}

export class PortAllocator {
  private readonly low: number;
  private readonly high: number;
  /** port → instance id */
  private readonly taken = new Map<number, string>();
  /** where the next search starts: rotating keeps a just-freed port (perhaps still in TIME_WAIT) out of use a while */
  private next: number;

  constructor(range: [number, number]) {
    const [low, high] = range;
    if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || low > high) {
      throw new EnjinError('invalid_config', `port range ${low}-${high} is not a valid range of TCP ports`);
    }
    this.low = low;
    this.high = high;
    this.next = low;
  }

  /** Records a port already in use by an instance (after a restart of the agent). */
  claim(port: number, instanceId: string): void {
    this.taken.set(port, instanceId);
  }

  release(port: number | null, instanceId: string): void {
    if (port !== null && this.taken.get(port) === instanceId) this.taken.delete(port);
  }

  owner(port: number): string | undefined {
    return this.taken.get(port);
  }

  /**
   * The port an instance (re)starts on: the one it had, unless something took it behind our back while the instance
   * was down (then a new one; the router learns it from the node's state).
   */
  async forLaunch(instanceId: string, previous: number | null): Promise<number> {
    const mine = previous !== null && (this.taken.get(previous) ?? instanceId) === instanceId;
    if (mine && (await portIsFree(previous!))) {
      this.taken.set(previous!, instanceId);
      return previous!;
    }
    this.release(previous, instanceId);
    return this.allocate(instanceId);
  }

  async allocate(instanceId: string): Promise<number> {
    const size = this.high - this.low + 1;
    for (let i = 0; i < size; i++) {
      const port = this.next;
      this.next = port === this.high ? this.low : port + 1;
      if (this.taken.has(port)) continue;
      // Reserve before the (asynchronous) bind test, so a concurrent allocation cannot pick the same port.
      this.taken.set(port, instanceId);
      if (await portIsFree(port)) return port;
      this.taken.delete(port);
    }
    throw new EnjinError('no_free_port', `no free port left in ${this.low}-${this.high} on this node; widen the agent's port range or stop instances`, { status: 503 });
  }
}
