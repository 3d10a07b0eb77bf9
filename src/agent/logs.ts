// Reading log files the agent writes (log-writer.ts): from a byte offset, following across rotations, and their tail.
import { open } from 'node:fs/promises';

/** The most a single `logs` read returns, whatever the caller asks: replies travel on the bus. */
export const MAX_LOG_READ = 1024 * 1024;

export interface LogChunk {
  data: string;
  /** where the next read should start */
  offset: number;
  /** the file's size when read */
  size: number;
}

/**
 * Reads up to `maxBytes` from `offset`; offset -1 reads the last `maxBytes`. An offset past the end means the file
 * was rotated (it shrank), so reading restarts at 0. A missing file reads as empty.
 */
export async function readLog(path: string, offset: number, maxBytes: number): Promise<LogChunk> {
  const limit = Math.max(1, Math.min(Math.floor(maxBytes) || MAX_LOG_READ, MAX_LOG_READ));
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { data: '', offset: 0, size: 0 };
    throw err;
  }
  try {
    const size = (await fh.stat()).size;
    let start = offset < 0 ? Math.max(0, size - limit) : Math.floor(offset);
    if (start > size) start = 0;
    const length = Math.min(limit, size - start);
    const buf = Buffer.alloc(length);
    const { bytesRead } = length > 0 ? await fh.read(buf, 0, length, start) : { bytesRead: 0 };
    // Stop before a UTF-8 sequence cut by the limit; the next read picks it up whole.
    const end = bytesRead - incompleteTail(buf.subarray(0, bytesRead));
    return { data: buf.subarray(0, end).toString('utf8'), offset: start + end, size };
  } finally {
    await fh.close();
  }
}

/** Number of trailing bytes that begin a UTF-8 sequence the buffer does not finish. */
function incompleteTail(buf: Buffer): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const b = buf[buf.length - back];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead byte
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/** The last `lines` lines of a file (reading at most its last `maxBytes`), for error messages. */
export async function tailLines(path: string, lines = 20, maxBytes = 8192): Promise<string> {
  const { data } = await readLog(path, -1, maxBytes);
  return data.replace(/\n$/, '').split('\n').slice(-lines).join('\n');
}
