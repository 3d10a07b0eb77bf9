// Receives a package upload: streamed to a file while it is hashed and counted, so memory stays at one small buffer
// whatever the size, and nothing is left behind when the upload is refused.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { EnjinError } from '../../core/errors.ts';
import { formatBytes } from '../../artifact/rules.ts';

export const MAX_PACKAGE_BYTES = 512 * 1024 ** 2;
/**
 * Uploads received at once; more get 429. Enough for a team (or a script) deploying in parallel, few enough to bound
 * the connections and the disk that uploads in progress hold (at most this many times MAX_PACKAGE_BYTES).
 */
export const MAX_CONCURRENT_UPLOADS = 32;

export interface ReceivedUpload {
  path: string;
  sha256: string;
  size: number;
}

export function packageTooLarge(limit = MAX_PACKAGE_BYTES): EnjinError {
  return new EnjinError('package_too_large', `the upload is over ${formatBytes(limit)}, the limit for a package; leave large files out with .enjinignore and let "prepare" fetch or build them`, { status: 413 });
}

/**
 * Writes `body` to `path`, hashing as it goes. A declared Content-Length over the limit is refused before a byte is
 * read; a body that grows past it is cut off there. On any failure the file is removed and the error rethrown. The
 * request is paused, not destroyed, so the caller can still answer (with Connection: close) before the socket goes.
 */
export async function receiveUpload(body: Readable, path: string, declaredLength: number | null, limit = MAX_PACKAGE_BYTES): Promise<ReceivedUpload> {
  if (declaredLength !== null && declaredLength > limit) throw packageTooLarge(limit);
  const hash = createHash('sha256');
  let size = 0;
  const out = createWriteStream(path, { mode: 0o600 });
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let ended = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        body.off('data', onData);
        body.pause();
        out.destroy();
        reject(err);
      };
      const onData = (chunk: Buffer): void => {
        size += chunk.length;
        if (size > limit) return fail(packageTooLarge(limit));
        hash.update(chunk);
        if (!out.write(chunk)) {
          body.pause();
          out.once('drain', () => settled || body.resume());
        }
      };
      body.on('data', onData);
      body.once('end', () => {
        ended = true;
        if (!settled) out.end();
      });
      body.once('error', (err) => fail(incomplete(err)));
      body.once('close', () => ended || fail(incomplete()));
      out.once('error', fail);
      out.once('close', () => {
        if (settled) return;
        if (!ended) return fail(incomplete());
        settled = true;
        resolve();
      });
    });
  } catch (err) {
    await rm(path, { force: true });
    throw err;
  }
  if (size === 0) {
    await rm(path, { force: true });
    throw new EnjinError('invalid_request', 'send the package as the request body with Content-Type: application/gzip', { status: 400 });
  }
  return { path, sha256: hash.digest('hex'), size };
}

function incomplete(cause?: unknown): EnjinError {
  return new EnjinError('upload_incomplete', 'the upload ended before the whole package arrived; send it again', { status: 400, cause });
}
