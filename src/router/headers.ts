// Header rewriting for the proxy: drop hop-by-hop headers, add X-Forwarded-* and X-Request-Id, in one pass over the raw
// header list.
import { requestIdFrom } from './request-id.ts';

/** What one pass over a client request's raw headers (and its request target) yields. */
export interface ForwardedRequest {
  /** where the request goes: the authority of an absolute-form target, else the first Host header ('' if none) */
  host: string;
  /** the request target to send upstream, always origin-form (`/path?query`, or `*`) */
  path: string;
  /** flat [name, value, name, value, …] to send upstream, original case and order */
  headers: string[];
  /** the request carries a body (non-zero Content-Length, or any Transfer-Encoding) */
  hasBody: boolean;
  /** set when the request must be refused with 400: the reason, for the client */
  problem: string | null;
  /** the X-Request-Id sent upstream and returned to the client: the client's own if sane, else a fresh one */
  requestId: string;
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
const REQUEST_ID = 9;

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
    case 12:
      return lowerIs(name, 'x-request-id') ? REQUEST_ID : PASS;
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

/** Splits an absolute-form request target (RFC 9112 §3.2.2) into its authority and origin-form path; null if not http(s). */
function absoluteTarget(target: string): { authority: string; path: string } | null {
  const m = /^(https?):\/\/([^/?#]*)([^#]*)/i.exec(target);
  if (m === null || m[2] === '' || m[2].includes('@')) return null;
  const rest = m[3];
  return { authority: m[2], path: rest === '' ? '/' : rest.startsWith('/') ? rest : `/${rest}` };
}

/**
 * Rewrites a client request's raw headers for the upstream. Host is kept (apps build URLs from it) and can never be
 * removed by the client; X-Forwarded-For gets the client address appended; X-Forwarded-Proto and -Host are set by the
 * router after the client's Connection tokens have been applied, so a client can neither forge nor strip them.
 * An absolute-form target routes by its authority, which also becomes the Host sent upstream (RFC 9112 §3.2.2).
 * For a WebSocket upgrade (`upgrade` true) Connection and Upgrade are kept: they are the handshake.
 * X-Request-Id: the client's first one is kept when sane, anything else is replaced by a fresh id; exactly one goes up.
 */
export function forwardRequest(raw: string[], clientAddress: string, upgrade: boolean, target = '/'): ForwardedRequest {
  const headers: string[] = [];
  let hostName = 'Host';
  let host = '';
  let hosts = 0;
  let hasBody = false;
  let xff = '';
  let clientRequestId: string | null = null;
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const value = raw[i + 1];
    switch (classifyRequestName(name)) {
      case PASS:
        headers.push(name, value);
        break;
      case HOST:
        if (hosts++ === 0) {
          hostName = name;
          host = value;
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
      case REQUEST_ID:
        clientRequestId ??= value;
        break;
      default: // HOP, X_FORWARDED_OTHER
        break;
    }
  }
  let path = target;
  let problem: string | null = null;
  if (hosts > 1) problem = 'The request has more than one Host header.\n';
  if (!target.startsWith('/') && target !== '*') {
    const absolute = absoluteTarget(target);
    if (absolute === null) problem ??= 'The request target must be a path or an absolute http:// URL.\n';
    else {
      host = absolute.authority;
      path = absolute.path;
    }
  }
  const kept = extra === null ? headers : dropNamed(headers, extra);
  const out = host === '' ? kept : [hostName, host, ...kept];
  out.push('x-forwarded-for', xff === '' ? clientAddress : `${xff}, ${clientAddress}`);
  out.push('x-forwarded-proto', 'http');
  if (host !== '') out.push('x-forwarded-host', host);
  const requestId = requestIdFrom(clientRequestId);
  out.push('x-request-id', requestId);
  return { host, path, headers: out, hasBody, problem, requestId };
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
 * headers such as Set-Cookie as separate lines. The response carries the request's id once: an app that echoes it
 * (or sends its own) does not make two.
 */
export function forwardResponseHeaders(raw: Buffer[], requestId: string): string[] {
  const out: string[] = [];
  let extra: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1');
    if (isHopByHopResponseName(name)) {
      if (name.length === 10 && name.toLowerCase() === 'connection') extra = connectionTokens(raw[i + 1].toString('latin1'), extra);
      continue;
    }
    if (name.length === 12 && lowerIs(name, 'x-request-id')) continue;
    out.push(name, raw[i + 1].toString('latin1'));
  }
  const kept = extra === null ? out : dropNamed(out, extra);
  kept.push('x-request-id', requestId);
  return kept;
}
