// A secret key file made once: written whole to a temporary file (0600), then hard-linked to its name, which fails if
// the name exists. A rename would overwrite; with a link, processes starting at once all end with the one key linked
// first, and an existing key is never replaced (what it sealed would be lost for good). Used for the controller's
// master key and each node's secrets key.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, rmSync, writeSync } from 'node:fs';

/** Writes `bytes` random bytes (base64, one line) to `path` unless it exists; true when this call made it. */
export function makeKeyFileOnce(path: string, bytes: number): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, `${randomBytes(bytes).toString('base64')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return false;
    }
  } finally {
    rmSync(tmp, { force: true });
  }
}
