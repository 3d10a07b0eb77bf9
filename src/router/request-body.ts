// Receiving a client's request body before it goes upstream: buffered up to a limit, and bounded in time and rate.
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import type { RouterLimits } from './limits.ts';

/** What the upstream request is sent with once the body is ready: whole, or its buffered start followed by the rest. */
export type ReadyBody = { kind: 'whole'; body: Buffer } | { kind: 'stream'; body: Readable };

export type BodyLimits = Pick<RouterLimits, 'requestBufferBytes' | 'bodyGraceMs' | 'bodyMinBytesPerSecond' | 'bodyIdleTimeoutMs'>;

/**
 * Reads a request body until it is complete or the buffer is full, then calls `ready`. A body larger than the buffer is
 * streamed on (the client has then already sent a buffer's worth, and the rate guard keeps watching it), so memory per
 * request stays bounded. Until the whole body has arrived, the client must keep a minimum average rate after a grace
 * period and never pause longer than the idle timeout; otherwise `tooSlow` is called once and reading stops.
 * Whichever comes first, `ready` or `tooSlow`, nothing else is called after `tooSlow`.
 */
export class BodyReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private received = 0;
  private readonly startedAt = Date.now();
  private lastByteAt = this.startedAt;
  private timer: NodeJS.Timeout | null = null;
  private streaming: PassThrough | null = null;
  private finished = false;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  private readonly onEnd = (): void => this.end();

  constructor(
    private readonly req: IncomingMessage,
    private readonly limits: BodyLimits,
    private readonly ready: (body: ReadyBody) => void,
    private readonly tooSlow: () => void,
  ) {}

  start(): void {
    this.req.on('data', this.onData);
    this.req.on('end', this.onEnd);
    this.schedule();
  }

  /** Stops watching: the exchange is over (answered, or the client left). */
  stop(): void {
    this.finished = true;
    this.clearTimer();
    this.req.off('data', this.onData);
    this.req.off('end', this.onEnd);
  }

  private data(chunk: Buffer): void {
    this.received += chunk.length;
    this.lastByteAt = Date.now();
    if (this.streaming !== null) return; // piped on; counted only for the rate guard
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered <= this.limits.requestBufferBytes) return;
    // The buffer is full: the rest streams through, the buffered start first.
    this.req.pause();
    const pass = new PassThrough({ highWaterMark: 64 * 1024 });
    this.streaming = pass;
    for (const c of this.chunks.splice(0)) pass.write(c);
    this.req.pipe(pass);
    this.ready({ kind: 'stream', body: pass });
  }

  private end(): void {
    this.clearTimer();
    this.finished = true;
    this.req.off('data', this.onData);
    if (this.streaming === null) this.ready({ kind: 'whole', body: this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks) });
  }

  /** When the client falls behind if it sends nothing more: the earlier of the idle and the rate deadline. */
  private deadline(): number {
    const idle = this.lastByteAt + this.limits.bodyIdleTimeoutMs;
    const rate = this.startedAt + this.limits.bodyGraceMs + (this.received / this.limits.bodyMinBytesPerSecond) * 1000;
    return Math.min(idle, rate);
  }

  private schedule(): void {
    this.clearTimer();
    const wait = Math.max(0, this.deadline() - Date.now());
    this.timer = setTimeout(() => this.check(), wait + 50);
  }

  private check(): void {
    this.timer = null;
    if (this.finished) return;
    if (Date.now() < this.deadline()) return this.schedule();
    this.stop();
    this.streaming?.destroy();
    this.tooSlow();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
