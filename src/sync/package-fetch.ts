// Fetches a package over the bus in chunks from whichever controller answers: a few requests in flight, a chunk that
// times out or finds no responder asked again (the queue group hands it to another controller), bytes streamed to a
// file in order while they are hashed, and the whole refused unless its size and sha256 are the ones expected.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Bus } from '../bus/bus.ts';
import { EnjinError } from '../core/errors.ts';
import { PACKAGE_CHUNK_MAX_BYTES, subjects, type PackageChunkReply, type PackageChunkRequest } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('package-fetch');

export interface PackageFetchOptions {
  /** bytes asked for per request; at most PACKAGE_CHUNK_MAX_BYTES (the default) */
  chunkBytes?: number;
  /** requests in flight; memory held is at most this many chunks. Default 4 */
  inFlight?: number;
  /** how long one chunk request waits for an answer, default 30 s */
  chunkTimeoutMs?: number;
  /** tries per chunk before the fetch fails, default 6 */
  attempts?: number;
  /** pause before a retry, multiplied by the try number; default 250 ms */
  retryDelayMs?: number;
  /** where chunks are asked for; default subjects.packageChunk (the controllers) */
  subject?: string;
  /** who serves them, for error messages; default 'a controller' */
  servedBy?: string;
}

/** What is fetched: a package is named by its sha256 and its size is known in advance. */
export interface PackageRef {
  versionId: string;
  sha256: string;
  size: number;
}

/** Answers that say "ask again, maybe elsewhere": no controller now, a slow one, or one whose store is away. */
const RETRYABLE = new Set(['bus_timeout', 'bus_no_responder', 'store_unavailable', 'internal']);

export class BusPackageSource {
  private readonly chunkBytes: number;
  private readonly inFlight: number;
  private readonly chunkTimeoutMs: number;
  private readonly attempts: number;
  private readonly retryDelayMs: number;
  private readonly subject: string;
  private readonly servedBy: string;

  constructor(private readonly bus: Bus, opts: PackageFetchOptions = {}) {
    this.chunkBytes = Math.min(opts.chunkBytes ?? PACKAGE_CHUNK_MAX_BYTES, PACKAGE_CHUNK_MAX_BYTES);
    this.inFlight = Math.max(1, opts.inFlight ?? 4);
    this.chunkTimeoutMs = opts.chunkTimeoutMs ?? 30_000;
    this.attempts = Math.max(1, opts.attempts ?? 6);
    this.retryDelayMs = opts.retryDelayMs ?? 250;
    this.subject = opts.subject ?? subjects.packageChunk;
    this.servedBy = opts.servedBy ?? 'a controller';
  }

  /** Writes the package to `to` (created, mode 0600); rejects, leaving a partial file for the caller to remove, unless every byte checks. */
  async fetch(pkg: PackageRef, to: string): Promise<void> {
    const chunks = Math.ceil(pkg.size / this.chunkBytes);
    const hash = createHash('sha256');
    const file = await open(to, 'wx', 0o600);
    const stop = new AbortController();
    // In order: the chunks asked for and not yet written. Its length is the memory bound (inFlight chunks).
    const window: Array<Promise<Buffer>> = [];
    let next = 0;
    const ask = (): void => {
      const p = this.chunk(pkg, next++, stop.signal);
      // Awaited in order below; a failure of one further on must not go unhandled while an earlier one is awaited.
      p.catch(() => undefined);
      window.push(p);
    };
    let written = 0;
    try {
      while (next < chunks && window.length < this.inFlight) ask();
      while (window.length) {
        const bytes = await window.shift()!;
        hash.update(bytes);
        await file.write(bytes, 0, bytes.length, written);
        written += bytes.length;
        if (next < chunks) ask();
      }
    } finally {
      stop.abort();
      await file.close();
    }
    const actual = hash.digest('hex');
    if (written !== pkg.size || actual !== pkg.sha256) {
      throw new EnjinError('package_corrupt', `the package of version ${pkg.versionId} arrived as ${written} bytes with sha256 ${actual}, not ${pkg.size} bytes with ${pkg.sha256}: ${this.servedBy} served damaged bytes; it was refused, deploy again (and check the controllers' package storage if it happens again)`, { status: 502 });
    }
  }

  private async chunk(pkg: PackageRef, index: number, signal: AbortSignal): Promise<Buffer> {
    const offset = index * this.chunkBytes;
    const length = Math.min(this.chunkBytes, pkg.size - offset);
    const request: PackageChunkRequest = { sha256: pkg.sha256, offset, length };
    let last: EnjinError | null = null;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      if (signal.aborted) throw new EnjinError('version_fetch_failed', `fetching version ${pkg.versionId} stopped`, { status: 502 });
      try {
        const reply = await this.bus.request<PackageChunkReply>(this.subject, request, { timeoutMs: this.chunkTimeoutMs });
        return checkReply(pkg, request, reply);
      } catch (err) {
        const e = err instanceof EnjinError ? err : new EnjinError('internal', (err as Error).message, { status: 500, cause: err });
        if (e.code === 'package_corrupt') throw e;
        if (!RETRYABLE.has(e.code)) throw new EnjinError('version_fetch_failed', `could not fetch version ${pkg.versionId}: ${e.message}`, { status: 502, cause: e });
        last = e;
        log.warn({ versionId: pkg.versionId, offset, attempt, code: e.code, err: e.message }, 'a package chunk got no good answer; asking again');
        if (attempt < this.attempts) await new Promise((r) => setTimeout(r, this.retryDelayMs * attempt));
      }
    }
    throw new EnjinError('version_fetch_failed', `could not fetch version ${pkg.versionId}: the chunk at byte ${offset} got no answer in ${this.attempts} tries (last: ${last?.message}); check that ${this.servedBy} is running and reachable on the bus`, { status: 502, cause: last });
  }
}

/** A reply must be exactly the bytes asked for, of the package asked for: anything else is refused, never written. */
function checkReply(pkg: PackageRef, request: PackageChunkRequest, reply: PackageChunkReply): Buffer {
  const refuse = (what: string): EnjinError =>
    new EnjinError('package_corrupt', `the package of version ${pkg.versionId} was refused: the chunk at byte ${request.offset} ${what}; deploy again (and check the controllers' package storage if it happens again)`, { status: 502 });
  if (!reply || typeof reply !== 'object' || typeof reply.data !== 'string') throw refuse('came back without data');
  if (reply.sha256 !== pkg.sha256 || reply.offset !== request.offset) throw refuse('came back for another package or offset');
  if (reply.size !== pkg.size) throw refuse(`came from a package of ${reply.size} bytes, not the declared ${pkg.size}`);
  // Decoded size is bounded by the string's length; check that before decoding, so a hostile reply costs nothing.
  if (reply.data.length > Math.ceil(request.length / 3) * 4) throw refuse('is longer than asked for');
  const bytes = Buffer.from(reply.data, 'base64');
  if (bytes.length !== request.length) throw refuse(`has ${bytes.length} bytes, not the ${request.length} asked for`);
  return bytes;
}
