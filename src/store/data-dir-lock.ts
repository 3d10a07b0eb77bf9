// The data directory's lock file: PGlite must be opened by one process only, and a second enjin must be told why it cannot start.
import { randomBytes } from 'node:crypto';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { EnjinError } from '../core/errors.ts';

export interface DataDirLock {
  release(): Promise<void>;
}

/**
 * Takes `${dataDir}/store.lock`, holding our pid. A lock whose pid is dead is stale (the holder crashed)
 * and is taken over. Limitation: two processes taking over the same stale lock at the same instant can
 * both succeed; the window is a few microseconds and needs a crash followed by a simultaneous double start.
 */
export async function lockDataDir(dataDir: string, lockPath: string): Promise<DataDirLock> {
  const content = `${process.pid}\n`;
  // Written whole to a private name and then linked into place, so nobody ever reads a half-written lock.
  const draft = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(draft, content, { flag: 'wx' });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(draft, lockPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const held = await readLock(lockPath);
      if (held === undefined) continue; // released between our link and our read
      const pid = parsePid(held);
      if (pid !== null && isAlive(pid)) {
        throw new EnjinError(
          'data_dir_locked',
          `another enjin (pid ${pid}) is using ${dataDir}; stop it, or start this one with --data OTHER_DIR`,
          { status: 409 },
        );
      }
      if (attempt >= 5) {
        throw new EnjinError('data_dir_locked', `cannot take the lock ${lockPath}: it keeps changing; is another enjin starting on ${dataDir}?`, {
          status: 409,
        });
      }
      // Stale: remove it only if it is still the lock we judged, not one a competitor just took.
      if ((await readLock(lockPath)) === held) await unlink(lockPath).catch(ignoreMissing);
    }
  } finally {
    await unlink(draft).catch(ignoreMissing);
  }

  let released = false;
  return {
    async release(): Promise<void> {
      if (released) return;
      released = true;
      // Never remove a lock that is no longer ours (someone judged ours stale and took over).
      if ((await readLock(lockPath)) === content) await unlink(lockPath).catch(ignoreMissing);
    },
  };
}

async function readLock(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parsePid(text: string): number | null {
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user; still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
