// Sealing values with AES-256-GCM under a 32-byte key, into self-describing strings; pure (no I/O): where the key
// lives is the caller's business (the controller's master key, an agent's node key).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { EnjinError } from './errors.ts';

/** The prefix and version of every sealed string: a later format gets v2, and v1 strings stay readable. */
export const SEALED_PREFIX = 'enjin-sealed:v1:';

export const SEALING_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A key and its id. The id names the key in what it sealed, so the wrong key is told apart from damaged data. */
export interface SealingKey {
  /** the first 16 hex digits of the key's sha256: shows which key, reveals nothing usable */
  keyId: string;
  key: Buffer;
}

export function sealingKey(key: Buffer): SealingKey {
  if (key.length !== SEALING_KEY_BYTES) throw new EnjinError('internal', `a sealing key is ${SEALING_KEY_BYTES} bytes, not ${key.length}`, { status: 500 });
  return { keyId: createHash('sha256').update(key).digest('hex').slice(0, 16), key: Buffer.from(key) };
}

/**
 * Reads a key written as text: 64 hex digits, or base64 (standard or URL-safe, padding optional) of 32 bytes.
 * `source` names where the text came from (an environment variable, a file) for the error; the text is never echoed.
 */
export function parseSealingKey(text: string, source: string): Buffer {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === SEALING_KEY_BYTES) return bytes;
    throw badKey(source, `it decodes to ${bytes.length} bytes as base64, not ${SEALING_KEY_BYTES}`);
  }
  if (!t) throw badKey(source, 'it is empty');
  throw badKey(source, `it is neither ${SEALING_KEY_BYTES * 2} hex digits nor base64`);
}

const badKey = (source: string, why: string): EnjinError =>
  new EnjinError('invalid_config', `${source} is not a usable key: ${why}; a key is ${SEALING_KEY_BYTES} random bytes in base64 or hex, e.g. the output of \`openssl rand -base64 32\``, { status: 400 });

/** The key id is the additional authenticated data: a string cannot be relabelled to claim another key. */
export function sealBytes(k: SealingKey, plain: Buffer): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', k.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(k.keyId, 'utf8'));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return `${SEALED_PREFIX}${k.keyId}:${iv.toString('base64')}:${body.toString('base64')}:${cipher.getAuthTag().toString('base64')}`;
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
}

/** A sealed string taken apart, not yet opened: its key id says which key can open it. */
export interface SealedParts {
  keyId: string;
  iv: Buffer;
  body: Buffer;
  tag: Buffer;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Takes a sealed string apart; sealed_corrupt when it is not one this format can have written. */
export function parseSealed(sealed: string): SealedParts {
  if (!isSealed(sealed)) throw corrupt(typeof sealed === 'string' && /^enjin-sealed:v\d+:/.test(sealed) ? 'it was sealed in a newer format than this enjin reads; upgrade enjin' : 'it does not start with enjin-sealed:v1:');
  const parts = sealed.slice(SEALED_PREFIX.length).split(':');
  if (parts.length !== 4) throw corrupt(`it has ${parts.length} fields after the prefix, not 4`);
  const [keyId, iv, body, tag] = parts as [string, string, string, string];
  if (!/^[0-9a-f]{16}$/.test(keyId)) throw corrupt('its key id is not 16 hex digits');
  if (![iv, body, tag].every((p) => B64.test(p))) throw corrupt('a field is not base64');
  const parsed = { keyId, iv: Buffer.from(iv, 'base64'), body: Buffer.from(body, 'base64'), tag: Buffer.from(tag, 'base64') };
  if (parsed.iv.length !== IV_BYTES || parsed.tag.length !== TAG_BYTES) throw corrupt('its IV or tag has the wrong length');
  return parsed;
}

/** Opens parts sealed under `k` (the caller has checked the key id): sealed_corrupt when anything was changed. */
export function openSealedParts(k: SealingKey, p: SealedParts): Buffer {
  try {
    const decipher = createDecipheriv('aes-256-gcm', k.key, p.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(p.keyId, 'utf8'));
    decipher.setAuthTag(p.tag);
    return Buffer.concat([decipher.update(p.body), decipher.final()]);
  } catch (err) {
    throw corrupt('its authentication tag does not match (the data was changed or damaged)', err);
  }
}

/** JSON in, sealed string out. */
export function sealJson(k: SealingKey, value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new EnjinError('internal', 'only a JSON value can be sealed', { status: 500 });
  return sealBytes(k, Buffer.from(text, 'utf8'));
}

/**
 * Opens a sealed JSON value; `wrongKey` makes the error for a string sealed under another key (its message is the
 * caller's: which key, and what to do, depends on whose key it is).
 */
export function unsealJson<T>(k: SealingKey, sealed: string, wrongKey: (sealedKeyId: string) => EnjinError): T {
  const parts = parseSealed(sealed);
  if (parts.keyId !== k.keyId) throw wrongKey(parts.keyId);
  const plain = openSealedParts(k, parts);
  try {
    return JSON.parse(plain.toString('utf8')) as T;
  } catch (err) {
    throw corrupt('it opened, but is not JSON', err);
  }
}

const corrupt = (why: string, cause?: unknown): EnjinError =>
  new EnjinError('sealed_corrupt', `sealed data cannot be opened: ${why}; it was changed outside enjin: restore it from a backup, or set the value again`, { status: 500, ...(cause === undefined ? {} : { cause }) });
