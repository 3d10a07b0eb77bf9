// The controller's master key, which seals config values before they reach the store (AES-256-GCM, src/core/sealing.ts):
// from ENJIN_MASTER_KEY, a key file (--master-key-file), or DATA/master.key, made on first use.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { makeKeyFileOnce } from '../process/key-file.ts';
import { dirname, join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import { parseSealingKey, sealJson, sealingKey, SEALING_KEY_BYTES, unsealJson, type SealingKey } from '../core/sealing.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('store');

export const MASTER_KEY_ENV = 'ENJIN_MASTER_KEY';
export const MASTER_KEY_FILE = 'master.key';

export interface MasterKeyOptions {
  /** the controller's data directory: DATA/master.key is read, or made when `shared` is not set */
  dataDir?: string;
  /** where ENJIN_MASTER_KEY is read (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** a file holding the key as base64 or hex text (--master-key-file): read, never made; wins over ENJIN_MASTER_KEY */
  keyFile?: string;
  /**
   * the store is shared with other controllers (a PostgreSQL cluster): all of them must seal under one key, so a key
   * is never made here (it would be this controller's alone); it comes from ENJIN_MASTER_KEY, --master-key-file, or
   * a DATA/master.key copied from the first controller
   */
  shared?: boolean;
}

export interface MasterKey {
  /** the first 16 hex digits of the key's sha256: safe to log, to show and to record beside sealed rows */
  keyId: string;
  /** where the key came from, for the log: `ENJIN_MASTER_KEY`, or a file's path */
  source: string;
  /** the key was made just now (DATA/master.key did not exist): worth telling the operator to back it up */
  created: boolean;
  /** a JSON value → `enjin-sealed:v1:KEYID:IV:CIPHERTEXT:TAG`, with a fresh random IV each time */
  seal(value: unknown): string;
  /** master_key_mismatch when sealed under another key, sealed_corrupt when changed or damaged */
  unseal<T>(sealed: string): T;
  /** master_key_mismatch unless `keyId` is this key's: for a key id recorded in the store, checked at start */
  assertSameKey(keyId: string): void;
}

export function loadMasterKey(o: MasterKeyOptions = {}): MasterKey {
  const env = o.env ?? process.env;
  let key: Buffer;
  let source: string;
  let created = false;
  if (o.keyFile !== undefined) {
    source = o.keyFile;
    key = readKeyFile(o.keyFile, `--master-key-file ${o.keyFile}`) ?? cannotRead(`--master-key-file ${o.keyFile}`, 'ENOENT: no such file');
  } else if (env[MASTER_KEY_ENV] !== undefined) {
    source = MASTER_KEY_ENV;
    // Set but empty is a mistake (an unset variable in a script), not a request for the data directory's key.
    key = parseSealingKey(env[MASTER_KEY_ENV]!, MASTER_KEY_ENV);
  } else if (o.dataDir !== undefined) {
    source = join(o.dataDir, MASTER_KEY_FILE);
    if (o.shared) key = readKeyFile(source, source) ?? throwIt(sharedWithoutKey(source));
    else ({ key, created } = readOrCreateKeyFile(source));
  } else {
    throw new EnjinError('invalid_config', `no master key: set ${MASTER_KEY_ENV} (32 random bytes in base64 or hex, e.g. \`openssl rand -base64 32\`) or give the controller a data directory`, { status: 400 });
  }
  const k = sealingKey(key);
  key.fill(0);
  if (created) log.warn({ path: source, keyId: k.keyId }, `made a new master key in ${source}: back it up; without it the config values in the store cannot be read`);
  return masterKeyOf(k, source, created);
}

function masterKeyOf(k: SealingKey, source: string, created: boolean): MasterKey {
  const mismatch = (sealedKeyId: string): EnjinError =>
    new EnjinError(
      'master_key_mismatch',
      `the data was sealed under master key ${sealedKeyId} and this controller has master key ${k.keyId} (from ${source}); ` +
        `set ${MASTER_KEY_ENV} to the same value on every controller of the cluster, or restore the data directory's ${MASTER_KEY_FILE} from a backup`,
      { status: 500 },
    );
  return {
    keyId: k.keyId,
    source,
    created,
    seal: (value) => sealJson(k, value),
    unseal: <T>(sealed: string) => unsealJson<T>(k, sealed, mismatch),
    assertSameKey: (keyId) => {
      if (keyId !== k.keyId) throw mismatch(keyId);
    },
  };
}

const throwIt = (err: EnjinError): never => {
  throw err;
};

const cannotRead = (name: string, why: string): never =>
  throwIt(new EnjinError('invalid_config', `the master key file ${name} cannot be read (${why}); check the path and its permissions`, { status: 400 }));

const sharedWithoutKey = (path: string): EnjinError =>
  new EnjinError(
    'invalid_config',
    `a cluster controller needs the master key every controller of the cluster shares, and there is none: set ${MASTER_KEY_ENV} ` +
      `(the same on every controller; make one with \`openssl rand -base64 32\`), pass --master-key-file FILE, or copy ${MASTER_KEY_FILE} from another controller's data directory to ${path}`,
    { status: 400 },
  );

/** A key file's text (base64 or hex; 32 raw bytes are taken too); null when there is no such file. */
function readKeyFile(path: string, name: string): Buffer | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return null;
    return cannotRead(name, `${e.code ?? 'error'}: ${e.message}`);
  }
  warnIfOthersCanRead(path);
  if (bytes.length === SEALING_KEY_BYTES && !/^[0-9a-zA-Z+/=_\s-]*$/.test(bytes.toString('latin1'))) return bytes;
  return parseSealingKey(bytes.toString('utf8'), `the master key file ${name}`);
}

function warnIfOthersCanRead(path: string): void {
  try {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) log.warn({ path, mode: mode.toString(8) }, `the master key file ${path} can be read by others than its owner; chmod 600 it`);
  } catch (err) {
    log.warn({ err, path }, 'could not check who can read the master key file');
  }
}

/**
 * DATA/master.key, made on first use: written whole to a temporary file (0600), then hard-linked to its name, which
 * fails if the name exists. A rename would do the same but overwrite; with a link, controllers starting at once on
 * one data directory all end with the one key that was linked first, and an existing key is never replaced.
 */
function readOrCreateKeyFile(path: string): { key: Buffer; created: boolean } {
  const existing = readKeyFile(path, path);
  if (existing) return { key: existing, created: false };
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let created: boolean;
  try {
    created = makeKeyFileOnce(path, SEALING_KEY_BYTES);
  } catch (err) {
    throw new EnjinError('invalid_config', `cannot make the master key file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'}: ${(err as Error).message}); check that the data directory is writable, or set ${MASTER_KEY_ENV}`, { status: 500, cause: err });
  }
  if (created) syncDir(dir);
  // Whoever linked first, this is the key every starter now uses.
  return { key: readKeyFile(path, path) ?? cannotRead(path, 'it was removed while being made'), created };
}

/** The new name survives a power cut once its directory is on disk. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (err) {
    log.warn({ err, dir }, 'could not sync the directory of the new master key; it is written, but a power cut now could lose it');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
