// X-Request-Id: one id per proxied request, kept when the client sent a sane one, so the app's logs, the client and
// the router's answers can all name the same request.
import { randomBytes } from 'node:crypto';

/** Longest client-sent id the router keeps: long enough for UUIDs and trace ids, short enough to log. */
export const MAX_REQUEST_ID_LENGTH = 128;

/** Characters of a kept id: those of UUIDs, base64 and the usual trace formats; nothing that could split a log line. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@+=/-]+$/;

/**
 * Ids are a per-process random prefix plus a counter: unique across router restarts and processes without a random
 * draw (or a syscall) per request, which keeps the hot path free of measurable cost.
 */
const prefix = randomBytes(6).toString('hex');
let counter = 0;

export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}-${counter.toString(36)}`;
}

/** The client's id if it is sane (bounded length, safe characters), else a fresh one. */
export function requestIdFrom(clientValue: string | null): string {
  if (clientValue !== null && clientValue.length > 0 && clientValue.length <= MAX_REQUEST_ID_LENGTH && SANE_REQUEST_ID.test(clientValue)) {
    return clientValue;
  }
  return newRequestId();
}
