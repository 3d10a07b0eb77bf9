// Whether the listener on an instance's port is the instance's own (the probes themselves are probe-runner.ts).
import { readFileSync } from 'node:fs';
import { socketInodes } from './listening-ports.ts';

/** Inodes of sockets listening on `port` (any address, IPv4 or IPv6), from /proc/net. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address:port, f[3] state (0A = LISTEN), f[9] inode
      if (f.length > 9 && f[3] === '0A' && f[1].endsWith(`:${hexPort}`)) inodes.add(f[9]);
    }
  }
  return inodes;
}

/**
 * Whether the socket listening on `port` belongs to one of `pids` (every process of the instance, whatever group or
 * session it moved to: a daemonized child may be the listener). A TCP connect alone cannot tell our instance from
 * anything else that took the port, and routing to the wrong listener is worse than waiting.
 * Returns null when /proc cannot say (then the probe alone decides).
 */
export function listenerAmong(pids: number[], port: number): boolean | null {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return false;
  const held = socketInodes(pids);
  for (const inode of held.inodes) if (inodes.has(inode)) return true;
  return held.readable ? false : null;
}
