// The agent's disk: how much space the node has left for versions and logs, and old logs of forgotten instances.
import { readdirSync, rmSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeDisk } from '../core/model.ts';

/** Logs of forgotten instances stay readable for a week (a post-mortem needs them), then go. */
const LOG_RETENTION_MS = 7 * 24 * 3600_000;

/**
 * The free space of the fullest disk among `dirs` (logs live in the data directory, versions may live apart: see
 * app-accounts.ts), against `minFreeBytes`. null, with the reason told, when it cannot be measured.
 */
export function measureDisk(dirs: string[], minFreeBytes: number, tell: (message: string) => void): NodeDisk | null {
  try {
    const [s] = [...new Set(dirs)].map((dir) => statfsSync(dir)).sort((a, b) => a.bavail * a.bsize - b.bavail * b.bsize);
    const freeBytes = s.bavail * s.bsize;
    return { freeBytes, totalBytes: s.blocks * s.bsize, minFreeBytes, low: freeBytes < minFreeBytes };
  } catch (err) {
    tell(`the free space of ${dirs[0]} cannot be measured: ${(err as Error).message}`);
    return null;
  }
}

/** Removes log files older than a week of instances `alive` does not know. */
export function pruneOldLogs(logsDir: string, alive: (instanceId: string) => boolean): void {
  const cutoff = Date.now() - LOG_RETENTION_MS;
  for (const name of readdirSync(logsDir)) {
    const id = name.replace(/\.(log(\.1)?|fifo)$/, '');
    if (alive(id)) continue;
    const path = join(logsDir, name);
    try {
      if (statSync(path).mtimeMs < cutoff) rmSync(path, { force: true });
    } catch {
      // gone meanwhile
    }
  }
}
