// Which TCP sockets listen where, from /proc: whether the listener on an instance's port is the instance's own (its
// readiness), and what an app that ignores $PORT listens on instead (for telling its user).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A listening socket: `address` as people write it (`0.0.0.0`, `127.0.0.1`, `[::]`, `[::1]`). */
export interface ListeningSocket {
  address: string;
  port: number;
}

/** Inodes of the sockets the processes hold open (every fd that is a socket); readable: /proc could be read for one at least. */
export function socketInodes(pids: number[]): { inodes: Set<string>; readable: boolean } {
  const inodes = new Set<string>();
  let readable = false;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
      readable = true;
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {
        // the fd closed while we looked
      }
    }
  }
  return { inodes, readable };
}

/** `0100007F` (IPv4, little-endian) or 32 hex digits (IPv6, four little-endian words) to a printable address. */
export function procAddress(hex: string): string {
  if (hex.length === 8) return [3, 2, 1, 0].map((k) => parseInt(hex.slice(k * 2, k * 2 + 2), 16)).join('.');
  const bytes: number[] = [];
  for (let word = 0; word < 4; word++) {
    for (let b = 3; b >= 0; b--) bytes.push(parseInt(hex.slice(word * 8 + b * 2, word * 8 + b * 2 + 2), 16));
  }
  // An IPv4-mapped address (::ffff:a.b.c.d) reads best as the IPv4 address.
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return bytes.slice(12).join('.');
  const groups: string[] = [];
  for (let k = 0; k < 16; k += 2) groups.push(((bytes[k] << 8) | bytes[k + 1]).toString(16));
  // The longest run of zero groups becomes '::'.
  let best = -1;
  let bestLen = 0;
  for (let k = 0; k < 8; ) {
    if (groups[k] !== '0') {
      k++;
      continue;
    }
    let end = k;
    while (end < 8 && groups[end] === '0') end++;
    if (end - k > bestLen) [best, bestLen] = [k, end - k];
    k = end;
  }
  const text = bestLen > 1 ? `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}` : groups.join(':');
  return `[${text}]`;
}

/** One listening TCP socket as /proc/…/net/tcp{,6} lists it. */
interface ListenEntry {
  hexAddress: string;
  port: number;
  inode: string;
}

/** The listening sockets of one network namespace's TCP tables (`/proc/net` or `/proc/PID/net`), IPv4 and IPv6. */
function listenEntries(netDir: string): ListenEntry[] {
  const entries: ListenEntry[] = [];
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`${netDir}/${table}`, 'utf8');
    } catch {
      continue; // no IPv6 on this host (or the process is gone): nothing listens there
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port, f[3] state (0A = LISTEN), f[9] inode
      if (f.length <= 9 || f[3] !== '0A') continue;
      const [hexAddress, hexPort] = f[1].split(':');
      entries.push({ hexAddress, port: parseInt(hexPort, 16), inode: f[9] });
    }
  }
  return entries;
}

/**
 * Whether the socket listening on `port` belongs to one of `pids` (every process of the instance, whatever group or
 * session it moved to: a daemonized child may be the listener). A TCP connect alone cannot tell our instance from
 * anything else that took the port, and routing to the wrong listener is worse than waiting.
 * Returns null when /proc cannot say (then the probe alone decides).
 */
export function listenerAmong(pids: number[], port: number): boolean | null {
  const inodes = new Set(listenEntries('/proc/net').filter((e) => e.port === port).map((e) => e.inode));
  if (inodes.size === 0) return false;
  const held = socketInodes(pids);
  for (const inode of held.inodes) if (inodes.has(inode)) return true;
  return held.readable ? false : null;
}

/**
 * The TCP sockets `pids` listen on, read from the network namespace of the first of them that is readable; null when
 * /proc cannot say (no /proc, or none of the processes readable).
 */
export function listeningSockets(pids: number[]): ListeningSocket[] | null {
  const { inodes, readable } = socketInodes(pids);
  if (!readable) return null;
  const found = new Map<string, ListeningSocket>();
  const nsPid = pids.find((pid) => {
    try {
      readdirSync(`/proc/${pid}/fd`);
      return true;
    } catch {
      return false;
    }
  });
  for (const e of listenEntries(`/proc/${nsPid}/net`)) {
    if (!inodes.has(e.inode)) continue;
    const socket = { address: procAddress(e.hexAddress), port: e.port };
    found.set(`${socket.address}:${socket.port}`, socket);
  }
  return [...found.values()].sort((a, b) => a.port - b.port || a.address.localeCompare(b.address));
}

/**
 * Why an instance that must listen on `port` was not ready, when it does not listen there: what it listens on
 * instead, if anything. Null when it does listen on the port (the cause is elsewhere) or /proc cannot say.
 */
export function notListeningReason(sockets: ListeningSocket[] | null, port: number): string | null {
  if (sockets === null || sockets.some((s) => s.port === port)) return null;
  const fix = 'it must accept connections on the port given in the PORT environment variable';
  if (sockets.length === 0) return `it does not listen on $PORT (${port}), nor on any other TCP port; ${fix}`;
  const where = sockets.map((s) => `${s.address}:${s.port}`).join(', ');
  return `it does not listen on $PORT (${port}); it listens on ${where} instead; ${fix}`;
}
