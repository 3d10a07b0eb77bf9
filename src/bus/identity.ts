// A process's signing identity on the bus: an Ed25519 key pair kept as PEM (0600) in its data directory, and its id.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { KeyRing } from './signing.ts';

export interface Identity {
  /** the node or controller id this key speaks for */
  id: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** base64 of the public key's SPKI DER form: what a join sends and Node.publicKey stores */
  publicKeyB64: string;
}

export const IDENTITY_KEY_FILE = 'identity.pem';
export const IDENTITY_ID_FILE = 'identity.json';

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

/** Writes a file whole or not at all (temp file + rename), readable by the owner only. */
async function writePrivate(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await rename(tmp, path);
}

export function publicKeyToB64(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'der' }).toString('base64');
}

/** The Ed25519 public key from its base64 SPKI DER form (as a join sends it); throws a 400 on anything else. */
export function publicKeyFromB64(b64: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' });
  } catch (err) {
    throw new EnjinError('invalid_request', 'the public key is not a base64 SPKI DER key; send the publicKeyB64 of an enjin identity', { status: 400, cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new EnjinError('invalid_request', `the public key is ${key.asymmetricKeyType ?? 'of an unknown type'}, not Ed25519`, { status: 400 });
  }
  return key;
}

/**
 * Loads the identity kept in `dir`, or creates one there (dir 0700, key 0600). `id` names a new identity (default a
 * fresh node id); an existing one keeps its id, and asking for another is refused rather than silently re-labelling a
 * key the cluster knows under its old name.
 */
export async function loadOrCreateIdentity(dir: string, opts: { id?: string } = {}): Promise<Identity> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyPath = join(dir, IDENTITY_KEY_FILE);
  const idPath = join(dir, IDENTITY_ID_FILE);

  let privateKey: KeyObject;
  try {
    const pem = await readFile(keyPath, 'utf8');
    try {
      privateKey = createPrivateKey(pem);
    } catch (err) {
      throw new EnjinError('invalid_config', `${keyPath} is not a PEM private key; restore it from a backup, or delete it (the node must then join again)`, { status: 500, cause: err });
    }
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new EnjinError('invalid_config', `${keyPath} holds a ${privateKey.asymmetricKeyType} key, not Ed25519; delete it and join again`, { status: 500 });
    }
    // An operator's copy may have widened the mode; the key is a secret.
    await chmod(keyPath, 0o600);
  } catch (err) {
    if (!isMissing(err)) throw err;
    privateKey = generateKeyPairSync('ed25519').privateKey;
    await writePrivate(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  }

  let id: string;
  try {
    const stored = JSON.parse(await readFile(idPath, 'utf8')) as { id?: unknown };
    if (typeof stored.id !== 'string' || stored.id === '') {
      throw new EnjinError('invalid_config', `${idPath} has no id; restore it, or delete ${dir} to start as a new node`, { status: 500 });
    }
    id = stored.id;
    if (opts.id !== undefined && opts.id !== id) {
      throw new EnjinError('invalid_config', `${dir} holds the identity of ${id}, not ${opts.id}; use another data directory for ${opts.id}`, { status: 500 });
    }
  } catch (err) {
    if (err instanceof SyntaxError) throw new EnjinError('invalid_config', `${idPath} is not JSON; restore it, or delete ${dir} to start as a new node`, { status: 500, cause: err });
    if (!isMissing(err)) throw err;
    id = opts.id ?? newId('node');
    await writePrivate(idPath, `${JSON.stringify({ id })}\n`);
  }

  const publicKey = createPublicKey(privateKey);
  return { id, privateKey, publicKey, publicKeyB64: publicKeyToB64(publicKey) };
}

/** A KeyRing held in memory: for tests, and for embedding enjin where the admitted keys come from elsewhere. */
export class StaticKeyRing implements KeyRing {
  readonly #keys = new Map<string, KeyObject>();

  constructor(entries: Iterable<[string, KeyObject | string]> = []) {
    for (const [id, key] of entries) this.add(id, key);
  }

  /** Admits `id` with its key (a KeyObject, or base64 SPKI DER as stored on a Node). */
  add(id: string, key: KeyObject | string): this {
    this.#keys.set(id, typeof key === 'string' ? publicKeyFromB64(key) : key);
    return this;
  }

  remove(id: string): boolean {
    return this.#keys.delete(id);
  }

  publicKey(id: string): KeyObject | null {
    return this.#keys.get(id) ?? null;
  }
}
