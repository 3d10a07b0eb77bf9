// Serves package chunks over the bus. Controllers serve every package they store to agents, each one in the queue
// group 'controllers' (leader or follower: it is a read), so a request goes to one of them and an agent retries
// elsewhere when one is gone. An agent serves the packages it kept, on its own subject, to a controller rebuilding its
// store from the nodes.
import type { Bus, Subscription } from '../bus/bus.ts';
import { invalid, notFound } from '../core/errors.ts';
import { PACKAGE_CHUNK_MAX_BYTES, subjects, type PackageChunkReply, type PackageChunkRequest } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('package-chunks');

export const CONTROLLERS_QUEUE = 'controllers';

/** Whatever holds packages by sha256: the controllers' store, or the packages an agent kept. */
export interface PackageReader {
  /** the package's size in bytes, or null if it is not held */
  size(sha256: string): Promise<number | null>;
  /** `length` bytes from `offset`, or null if it is not held (any more) */
  read(sha256: string, offset: number, length: number): Promise<Buffer | null>;
}

export interface ServeChunksOptions {
  /** default subjects.packageChunk */
  subject?: string;
  /** default CONTROLLERS_QUEUE; null: no queue group (one server per subject) */
  queue?: string | null;
  /** what a miss tells the asker to do */
  missingHint?: string;
}

export function servePackageChunks(bus: Bus, packages: PackageReader, opts: ServeChunksOptions = {}): Subscription {
  const hint = opts.missingHint ?? 'its version was removed; deploy it again';
  const queue = opts.queue === undefined ? CONTROLLERS_QUEUE : opts.queue;
  return bus.handle(
    opts.subject ?? subjects.packageChunk,
    async (data, meta): Promise<PackageChunkReply> => {
      const req = checkChunkRequest(data);
      try {
        const size = await packages.size(req.sha256);
        if (size === null) throw notFound(`package ${req.sha256}`, hint);
        if (req.offset > size) throw invalid(`offset ${req.offset} is past the end of package ${req.sha256} (${size} bytes)`);
        const bytes = await packages.read(req.sha256, req.offset, Math.min(req.length, size - req.offset));
        if (!bytes) throw notFound(`package ${req.sha256}`, hint);
        return { sha256: req.sha256, offset: req.offset, size, data: bytes.toString('base64') };
      } catch (err) {
        // The asker gets the error as the answer; the operator gets it here, with who asked.
        log.warn({ err, sha256: req.sha256, offset: req.offset, sender: meta.sender }, 'a package chunk could not be served');
        throw err;
      }
    },
    queue === null ? {} : { queue },
  );
}

export function checkSha256(sha256: string): string {
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) throw invalid(`not a sha256 (64 lower-case hex digits): ${JSON.stringify(String(sha256).slice(0, 80))}`);
  return sha256;
}

function checkChunkRequest(data: unknown): PackageChunkRequest {
  const r = data as PackageChunkRequest;
  if (!r || typeof r !== 'object') throw invalid('a package chunk request is { sha256, offset, length }');
  checkSha256(r.sha256);
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw invalid('a package chunk offset must be a whole number of bytes from 0');
  if (!Number.isSafeInteger(r.length) || r.length < 1 || r.length > PACKAGE_CHUNK_MAX_BYTES) {
    throw invalid(`a package chunk length must be 1 to ${PACKAGE_CHUNK_MAX_BYTES} bytes`);
  }
  return r;
}
