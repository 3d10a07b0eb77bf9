// receiveUpload over real HTTP: a body is written to disk while hashed, cut off at the limit, and a refused or
// broken upload leaves no file behind.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EnjinError } from '../../core/errors.ts';
import { receiveUpload } from './upload.ts';

describe('receiveUpload', () => {
  let dir: string;
  let server: http.Server;
  let url: string;
  const LIMIT = 1024 * 1024;
  /** the outcome of the last upload the server received */
  let outcome: Promise<{ path: string; result: unknown }>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'enjin-upload-'));
    let n = 0;
    server = http.createServer((req, res) => {
      const path = join(dir, `u${n++}`);
      const declared = req.headers['content-length'] ? Number(req.headers['content-length']) : null;
      outcome = receiveUpload(req, path, declared, LIMIT).then(
        (r) => ({ path, result: r }),
        (err) => ({ path, result: err }),
      );
      void outcome.then(({ result }) => {
        res.writeHead(result instanceof EnjinError ? result.status : 200, { connection: 'close' });
        res.end(result instanceof EnjinError ? result.code : 'ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  after(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (chunks: Buffer[], headers: Record<string, string> = {}, abortAfter?: number) =>
    new Promise<{ status: number; body: string } | Error>((resolve) => {
      const req = http.request(url, { method: 'POST', headers }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', resolve);
      let sent = 0;
      for (const c of chunks) {
        if (abortAfter !== undefined && sent >= abortAfter) {
          setTimeout(() => req.destroy(), 100);
          return;
        }
        req.write(c);
        sent += c.length;
      }
      req.end();
    });

  it('writes the body to disk and returns its sha256 and size', async () => {
    const data = Buffer.alloc(300_000, 7);
    const r = await post([data.subarray(0, 100_000), data.subarray(100_000)]);
    assert.deepEqual(r, { status: 200, body: 'ok' });
    const { path, result } = await outcome;
    assert.deepEqual(result, { path, size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    assert.deepEqual(readFileSync(path), data);
  });

  it('cuts a chunked body off at the limit and removes what it wrote', async () => {
    const chunk = Buffer.alloc(256 * 1024, 1);
    const r = await post(Array.from({ length: 16 }, () => chunk));
    const { path, result } = await outcome;
    assert.equal((result as EnjinError).code, 'package_too_large');
    if (!(r instanceof Error)) assert.equal(r.status, 413);
    assert.equal(existsSync(path), false);
  });

  it('refuses a declared length over the limit before reading, and a client that goes away mid-upload', async () => {
    const r = await post([Buffer.alloc(10)], { 'content-length': String(LIMIT + 1) });
    assert.equal((r as { status: number }).status, 413);
    assert.equal(existsSync((await outcome).path), false);
    await post([Buffer.alloc(64 * 1024), Buffer.alloc(64 * 1024)], { 'content-length': String(LIMIT - 1) }, 64 * 1024);
    const { path, result } = await outcome;
    assert.equal((result as EnjinError).code, 'upload_incomplete');
    assert.equal(existsSync(path), false);
  });
});
