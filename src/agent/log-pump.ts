// Moving an app's output into its capped log at a bounded rate: readers of FIFOs and pipes that pause when over budget.
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { CappedLog } from './log-writer.ts';
import { LineStamper } from './log-stamp.ts';

/** How often budgets refill; a paused source waits at most this long. */
const TICK_MS = 100;

/**
 * Per-source read budgets, refilled every tick. A source over its budget is paused until the next tick: the kernel
 * pipe then fills and the app blocks on write, so the agent's CPU (and the disk's write rate) is bounded by the
 * budget whatever the app writes. Memory is bounded too: a paused stream stops reading once its small buffer is full.
 */
export class LogPump {
  private readonly perTick: number;
  private readonly paused = new Set<Pumped>();
  private timer: NodeJS.Timeout | null = null;

  /** bytesPerSecond: the most one source may log per second */
  constructor(bytesPerSecond: number) {
    this.perTick = Math.max(1024, Math.floor((bytesPerSecond * TICK_MS) / 1000));
  }

  /**
   * Copies `stream` into `log` within the budget until the stream ends; returns a handle to wait for or cut it.
   * stampLines: each line starts with the time it was read (instance output; see log-stamp.ts).
   */
  pump(stream: Readable, log: CappedLog, opts: { stampLines?: boolean } = {}): Pumped {
    return new Pumped(stream, log, this, opts.stampLines ? new LineStamper() : null);
  }

  /** @internal */
  charge(p: Pumped, bytes: number): void {
    p.used += bytes;
    if (p.used < this.perTick) return;
    p.stream.pause();
    this.paused.add(p);
    if (!this.timer) this.timer = setTimeout(() => this.refill(), TICK_MS);
  }

  /** @internal */
  forget(p: Pumped): void {
    this.paused.delete(p);
  }

  private refill(): void {
    this.timer = null;
    const waiting = [...this.paused];
    this.paused.clear();
    for (const p of waiting) {
      p.used = Math.max(0, p.used - this.perTick);
      if (p.used >= this.perTick) {
        this.paused.add(p); // a burst read in one go pays for it over several ticks
      } else if (!p.ended) {
        p.stream.resume();
      }
    }
    if (this.paused.size) this.timer = setTimeout(() => this.refill(), TICK_MS);
  }

  /** Stops refilling (agent shutdown); sources still paused stay paused until closed. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.paused.clear();
  }
}

/** One source being copied into a log. */
export class Pumped {
  used = 0;
  ended = false;
  /** bytes copied so far */
  bytes = 0;
  private lastDataAt = 0;
  readonly done: Promise<void>;

  constructor(
    readonly stream: Readable,
    private readonly log: CappedLog,
    private readonly pump: LogPump,
    private readonly stamper: LineStamper | null = null,
  ) {
    this.done = new Promise<void>((resolve) => {
      const finish = (): void => {
        if (this.ended) return;
        this.ended = true;
        pump.forget(this);
        resolve();
      };
      stream.on('data', (chunk: Buffer) => {
        this.bytes += chunk.length;
        this.lastDataAt = Date.now();
        // The budget counts what goes to disk, stamps included: that bounds the disk's write rate and the agent's
        // work per line, even for an app that floods one-byte lines.
        pump.charge(this, this.write(chunk));
      });
      stream.once('end', finish);
      stream.once('close', finish);
      // A read error ends this source; the log keeps what arrived before it.
      stream.once('error', (err) => {
        const text = `output could not be read: ${err.message}\n`;
        if (this.stamper) this.write(Buffer.from(`${this.stamper.midLine ? '\n' : ''}[enjin] ${text}`));
        else log.write(`[enjin ${new Date().toISOString()}] ${text}`);
        finish();
      });
    });
  }

  /**
   * Waits until the source ended or has been quiet for `quietMs` (its writers are gone and the pipe is empty), at
   * most `timeoutMs`. Used before reading the tail of a log whose process just died.
   */
  async settle(quietMs = 60, timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const start = Date.now();
    while (!this.ended && Date.now() < deadline) {
      const idle = Date.now() - Math.max(this.lastDataAt, start);
      if (idle >= quietMs && !this.stream.isPaused()) return;
      await new Promise((r) => setTimeout(r, Math.min(quietMs, 20)));
    }
  }

  /** Writes a chunk to the log (stamped if this source is); returns the bytes written. */
  private write(chunk: Buffer): number {
    const out = this.stamper ? this.stamper.stamp(chunk) : chunk;
    this.log.write(out);
    return out.length;
  }

  /** Stops reading now: what was already read goes to the log, what is still in a FIFO stays there for the next reader. */
  cut(): void {
    this.pump.forget(this);
    this.stream.removeAllListeners('data');
    for (let chunk = this.stream.read() as Buffer | null; chunk !== null; chunk = this.stream.read() as Buffer | null) this.write(chunk);
    this.stream.destroy();
  }
}

/**
 * Opens the agent's read end of a FIFO without ever blocking: O_NONBLOCK for the open itself, then libuv's pipe
 * handle (epoll) for reads. Never fs streams or thread-pool reads on a FIFO: a blocked read would hold a pool thread
 * for as long as the app stays silent, and a pool held that way keeps the agent from exiting.
 */
export function openFifoReader(path: string): Socket {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const socket = new Socket({ fd, readable: true, writable: false });
  // Reading an app's output is no reason to keep the agent's process alive.
  socket.unref();
  return socket;
}
