// For agent tests: a one-package HTTP server with a bearer token, so agents can prepare a real version.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import * as tar from 'tar';
import type { VersionSpec } from '../core/messages.ts';

export interface PackageServer {
  version(versionId: string, prepare?: string[]): VersionSpec;
  close(): void;
}

/** Serves a package holding one README, built in `dir`. */
export async function startPackageServer(dir: string): Promise<PackageServer> {
  const token = 'test-token';
  const src = join(dir, 'pkg-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'README'), 'a test package\n');
  const file = join(dir, 'pkg.tar.gz');
  await tar.c({ gzip: true, cwd: src, file, portable: true }, ['README']);
  const bytes = readFileSync(file);
  const server: Server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) return void res.writeHead(401).end();
    res.setHeader('content-length', bytes.length);
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/pkg`;
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return {
    version: (versionId, prepare = []) => ({ versionId, project: 'test', sha256, size: bytes.length, url, token, prepare, env: {} }),
    close: () => server.close(),
  };
}
