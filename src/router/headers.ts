// Header rewriting for the proxy: drop hop-by-hop headers, add X-Forwarded-*, in one pass over the raw header list.

/** What one pass over a client request's raw headers yields. */
export interface ForwardedRequest {
  /** the first Host header, as sent ('' if none) */
  host: string;
  /** flat [name, value, name, value, …] to send upstream, original case and order */
  headers: string[];
  /** the request carries a body (non-zero Content-Length, or any Transfer-Encoding) */
  hasBody: boolean;
}

// Classes of header names the proxy acts on; anything else passes through untouched.
const PASS = 0;
const HOST = 1;
const HOP = 2; // hop-by-hop: never forwarded (RFC 9110 §7.6.1), plus Expect, which the router has already answered
const CONNECTION = 3;
const UPGRADE = 4;
const CONTENT_LENGTH = 5;
const TRANSFER_ENCODING = 6;
const XFF = 7;
const X_FORWARDED_OTHER = 8;

/** Switches on length first so that most names are classified without lower-casing (an allocation) or comparing. */
function classifyRequestName(name: string): number {
  switch (name.length) {
    case 2:
      return lowerIs(name, 'te') ? HOP : PASS;
    case 4:
      return lowerIs(name, 'host') ? HOST : PASS;
    case 6:
      return lowerIs(name, 'expect') ? HOP : PASS;
    case 7: {
      const l = name.toLowerCase();
      return l === 'upgrade' ? UPGRADE : l === 'trailer' ? HOP : PASS;
    }
    case 10: {
      const l = name.toLowerCase();
      return l === 'connection' ? CONNECTION : l === 'keep-alive' ? HOP : PASS;
    }
    case 14:
      return lowerIs(name, 'content-length') ? CONTENT_LENGTH : PASS;
    case 15:
      return lowerIs(name, 'x-forwarded-for') ? XFF : PASS;
    case 16: {
      const l = name.toLowerCase();
      return l === 'x-forwarded-host' ? X_FORWARDED_OTHER : l === 'proxy-connection' ? HOP : PASS;
    }
    case 17: {
      const l = name.toLowerCase();
      return l === 'transfer-encoding' ? TRANSFER_ENCODING : l === 'x-forwarded-proto' ? X_FORWARDED_OTHER : PASS;
    }
    default:
      return PASS;
  }
}

function lowerIs(name: string, lower: string): boolean {
  return name === lower || name.toLowerCase() === lower;
}

/** Extra header names a Connection header declares hop-by-hop (besides the usual close / keep-alive / upgrade). */
function connectionTokens(value: string, into: Set<string> | null): Set<string> | null {
  for (const part of value.split(',')) {
    const token = part.trim().toLowerCase();
    if (token === '' || token === 'close' || token === 'keep-alive' || token === 'upgrade') continue;
    (into ??= new Set()).add(token);
  }
  return into;
}

function dropNamed(headers: string[], names: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!names.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1]);
  }
  return out;
}

/**
 * Rewrites a client request's raw headers for the upstream. Host is kept (apps build URLs from it);
 * X-Forwarded-For gets the client address appended; X-Forwarded-Proto and -Host are set by the router, never trusted
 * from the client. For a WebSocket upgrade (`upgrade` true) Connection and Upgrade are kept: they are the handshake.
 */
export function forwardRequest(raw: string[], clientAddress: string, upgrade: boolean): ForwardedRequest {
  const headers: string[] = [];
  let host = '';
  let hasBody = false;
  let xff = '';
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    switch (classifyRequestName(name)) {
      case PASS:
        headers.push(name, value);
        break;
      case HOST:
        // Only the first: two Host headers are ambiguous, and undici refuses them.
        if (host === '') {
          host = value;
          headers.push(name, value);
        }
        break;
      case CONNECTION:
        extra = connectionTokens(value, extra);
        if (upgrade) headers.push(name, value);
        break;
      case UPGRADE:
        if (upgrade) headers.push(name, value);
        break;
      case CONTENT_LENGTH:
        if (value !== '0') hasBody = true;
        headers.push(name, value);
        break;
      case TRANSFER_ENCODING:
        // The upstream connection chooses its own framing; a chunked request body is re-chunked.
        hasBody = true;
        if (upgrade) headers.push(name, value);
        break;
      case XFF:
        xff = xff === '' ? value : `${xff}, ${value}`;
        break;
      default: // HOP, X_FORWARDED_OTHER
        break;
    }
  }
  headers.push('x-forwarded-for', xff === '' ? clientAddress : `${xff}, ${clientAddress}`);
  headers.push('x-forwarded-proto', 'http');
  if (host !== '') headers.push('x-forwarded-host', host);
  return { host, headers: extra === null ? headers : dropNamed(headers, extra), hasBody };
}

function isHopByHopResponseName(name: string): boolean {
  switch (name.length) {
    case 2:
      return lowerIs(name, 'te');
    case 7: {
      const l = name.toLowerCase();
      return l === 'trailer' || l === 'upgrade';
    }
    case 10: {
      const l = name.toLowerCase();
      return l === 'connection' || l === 'keep-alive';
    }
    case 16:
      return lowerIs(name, 'proxy-connection');
    case 17:
      return lowerIs(name, 'transfer-encoding');
    default:
      return false;
  }
}

/**
 * Turns an upstream response's raw header buffers into a flat list for `res.writeHead`, hop-by-hop headers removed.
 * Latin-1 keeps every byte as sent (Node writes header strings back as Latin-1), and a flat list keeps repeated
 * headers such as Set-Cookie as separate lines.
 */
export function forwardResponseHeaders(raw: Buffer[]): string[] {
  const out: string[] = [];
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1');
    if (isHopByHopResponseName(name)) {
      if (name.length === 10 && name.toLowerCase() === 'connection') extra = connectionTokens(raw[i + 1].toString('latin1'), extra);
      continue;
    }
    out.push(name, raw[i + 1].toString('latin1'));
  }
  return extra === null ? out : dropNamed(out, extra);
}
