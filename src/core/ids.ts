// Identifiers: a type prefix plus a time-ordered, random suffix, so ids sort by creation and say what they name.
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

let lastTime = 0;
let counter = 0;

/** newId('job') → 'job_0f3k9v2m7q1x4c8h' : 48-bit millisecond time, a counter within the millisecond, 40 random bits. */
export function newId(prefix: string): string {
  const now = Date.now();
  counter = now === lastTime ? counter + 1 : 0;
  lastTime = now;
  const buf = new Uint8Array(13);
  const view = new DataView(buf.buffer);
  view.setUint16(0, Math.floor(now / 2 ** 32));
  view.setUint32(2, now >>> 0);
  view.setUint16(6, counter & 0xffff);
  buf.set(randomBytes(5), 8);
  return `${prefix}_${base32(buf)}`;
}

/** A random secret, URL-safe. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** Names of workspaces, projects and services: DNS labels, so they can appear in hostnames. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$/;
export const NAME_RULE = 'lower-case letters, digits and dashes, starting with a letter, not ending with a dash, at most 40 characters';
