// A size-capped log file the agent writes itself: rotation by rename (ID.log -> ID.log.1) and reopen, one at a time.
import { closeSync, fstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/** The smallest total cap honoured: below it a single line would rotate the file on every write. */
const MIN_TOTAL_BYTES = 8 * 1024;

/**
 * Writes are synchronous on purpose: the agent is the only writer, its input is rate-limited per source (see
 * log-pump.ts), and a bounded write to a local file is cheaper than a round trip through the libuv thread pool,
 * which must never be held by logs (a stuck pool is what kept the agent from exiting). Two files exist at most, each
 * at most half the total cap, so the total on disk never exceeds the cap whatever arrives.
 */
export class CappedLog {
  readonly path: string;
  /** each of the two files holds at most this much */
  private readonly fileMax: number;
  private fd: number | null = null;
  private size = 0;
  private lastError: NodeJS.ErrnoException | null = null;
  /** bytes thrown away because the file could not be written (disk full, directory gone) */
  dropped = 0;

  constructor(path: string, totalMaxBytes: number, private readonly onError: (err: NodeJS.ErrnoException) => void = () => {}) {
    this.path = path;
    this.fileMax = Math.floor(Math.max(totalMaxBytes, MIN_TOTAL_BYTES) / 2);
  }

  write(data: Buffer | string): void {
    let buf = typeof data === 'string' ? Buffer.from(data) : data;
    try {
      this.ensureOpen();
      while (buf.length) {
        let room = this.fileMax - this.size;
        if (room <= 0 || (buf.length > room && this.size > 0 && buf.lastIndexOf(10, room - 1) < 0)) {
          // Nothing fits, or only a cut line would: start a fresh file rather than split a line that could fit whole.
          this.rotate();
          room = this.fileMax;
        }
        let take = Math.min(buf.length, room);
        if (take < buf.length) {
          const nl = buf.lastIndexOf(10, take - 1);
          if (nl >= 0) take = nl + 1; // end the file on a line boundary when there is one
        }
        this.writeAll(buf.subarray(0, take));
        buf = buf.subarray(take);
      }
      this.lastError = null;
    } catch (err) {
      this.dropped += buf.length;
      this.fail(err as NodeJS.ErrnoException);
    }
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // closing a descriptor cannot lose data we still hold
    }
    this.fd = null;
  }

  /** Closes and deletes both files. */
  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
    rmSync(`${this.path}.1`, { force: true });
  }

  private ensureOpen(): void {
    if (this.fd !== null) return;
    this.fd = openSync(this.path, 'a');
    this.size = fstatSync(this.fd).size;
  }

  private rotate(): void {
    this.close();
    // rename replaces the old .1 at once: readers holding it open keep their copy, new readers see the new file
    renameSync(this.path, `${this.path}.1`);
    this.ensureOpen();
  }

  private writeAll(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const n = writeSync(this.fd!, chunk, off, chunk.length - off);
      off += n;
      this.size += n;
    }
  }

  private fail(err: NodeJS.ErrnoException): void {
    // Reopen next time: the file may have been removed, or the disk freed.
    this.close();
    // One report per kind of failure, not one per chunk of a flood.
    if (this.lastError?.code !== err.code) this.onError(err);
    this.lastError = err;
  }
}
