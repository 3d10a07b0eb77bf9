// The static builder's web server: serves the version's files on $PORT with their content types, cache headers and
// gzip. Written into the version as a CommonJS file the app's own user runs with node; it needs nothing installed.
import type * as Fs from 'node:fs';
import type * as Http from 'node:http';
import type * as Path from 'node:path';
import type * as Zlib from 'node:zlib';

/** Content types by extension; anything else is application/octet-stream. */
export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.otf': 'font/otf',
  '.wasm': 'application/wasm',
  '.pdf': 'application/pdf',
  '.webmanifest': 'application/manifest+json',
};

/** The server itself; it runs in the generated file, so it may use nothing but its arguments (no imports, no closures). */
function serveStatic(http: typeof Http, fs: typeof Fs, path: typeof Path, zlib: typeof Zlib, types: Record<string, string>): void {
  const root = process.cwd();
  const compressible = /^(text\/|application\/(json|javascript|xml|manifest\+json)|image\/svg\+xml)/;
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('bad request\n');
      return;
    }
    // Dot files and directories (.git, .env, .enjin-build, .venv) are never served; nor is anything outside the root.
    const parts = pathname.split('/').filter(Boolean);
    if (parts.some((p) => p.startsWith('.') || p.includes('\0'))) return notFound(res);
    let file = path.join(root, ...parts);
    let stat: Fs.Stats;
    try {
      stat = fs.statSync(file);
      if (stat.isDirectory()) {
        if (!pathname.endsWith('/')) {
          res.writeHead(301, { location: `${pathname}/` });
          res.end();
          return;
        }
        file = path.join(file, 'index.html');
        stat = fs.statSync(file);
      }
      if (!stat.isFile()) return notFound(res);
    } catch {
      return notFound(res);
    }
    const type = types[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    const etag = `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
    const headers: Record<string, string> = {
      'content-type': type,
      etag,
      'last-modified': stat.mtime.toUTCString(),
      // HTML is checked again on every visit (it names the other files); the rest may be kept for an hour.
      'cache-control': type.startsWith('text/html') ? 'no-cache' : 'public, max-age=3600',
      vary: 'accept-encoding',
    };
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const gzip = compressible.test(type) && stat.size > 256 && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    if (gzip) headers['content-encoding'] = 'gzip';
    else headers['content-length'] = String(stat.size);
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const body = fs.createReadStream(file);
    body.on('error', () => res.destroy());
    (gzip ? body.pipe(zlib.createGzip()) : body).pipe(res);
  });
  function notFound(res: Http.ServerResponse): void {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
  }
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, () => console.log(`static files of ${root} on port ${port}`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

/** The generated file's text: the function above, called with node's modules. */
export const STATIC_SERVER_SCRIPT = `// Written by enjin's static builder: serves this directory on $PORT.
'use strict';
// Some TypeScript runners wrap functions in __name(fn, "name") to keep their names; here that is a no-op.
var __name = (fn) => fn;
(${serveStatic.toString()})(require('node:http'), require('node:fs'), require('node:path'), require('node:zlib'), ${JSON.stringify(CONTENT_TYPES)});
`;
