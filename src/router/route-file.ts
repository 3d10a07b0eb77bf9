// The router's persisted route table: read at start so it routes before the controller answers, written atomically.
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { RouteTableUpdate } from '../core/messages.ts';

/** The persisted table, or null if there is none. A damaged file is reported and ignored: the bus will send a table. */
export async function readRouteFile(path: string): Promise<RouteTableUpdate | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    return JSON.parse(text) as RouteTableUpdate;
  } catch (err) {
    process.emitWarning(`ignoring unreadable route table ${path}: ${(err as Error).message}`);
    return null;
  }
}

let tempCounter = 0;

/** Writes to a temporary file, flushes it, then renames it over the old one: a crash leaves the old table or the new. */
export async function writeRouteFile(path: string, update: RouteTableUpdate): Promise<void> {
  const temp = `${path}.${process.pid}.${++tempCounter}.tmp`;
  const file = await open(temp, 'w', 0o600);
  try {
    await file.writeFile(JSON.stringify(update));
    await file.sync();
  } catch (err) {
    await file.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
  await file.close();
  await rename(temp, path);
  // The rename itself is durable only once the directory is flushed; not every platform can open a directory.
  try {
    const dir = await open(dirname(path), 'r');
    await dir.sync().finally(() => dir.close());
  } catch {
    // best effort
  }
}
