// Opens the store: embedded PGlite in the data directory by default, a PostgreSQL server when given a URL; migrated either way.
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { EnjinError, invalid } from '../core/errors.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { migrateToLatest } from './migrations.ts';
import { PGliteDialect } from './pglite-dialect.ts';
import type { Database } from './schema.ts';
import { SqlStore } from './sql-store.ts';
import { PostgresLeaderLock } from './advisory-lock.ts';
import type { ConfigSealer, Store } from './store.ts';
import type { ConfigVars } from '../core/model.ts';
import { loadMasterKey, type MasterKey, type MasterKeyOptions } from './config-cipher.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('store');
import { isConnectionError, redactUrl, storeUnavailable } from './store-errors.ts';

export interface OpenStoreOptions {
  /** enjin's data directory; the embedded store lives in `${dataDir}/store` */
  dataDir: string;
  /** postgres://user:password@host:port/database; absent: the embedded store */
  databaseUrl?: string;
  /** seals config vars; absent: the master key (see masterKeySealer) */
  sealer?: ConfigSealer;
  /** --master-key-file: the master key's file, over ENJIN_MASTER_KEY and DATA/master.key */
  masterKeyFile?: string;
}

/** Seconds to wait for a PostgreSQL connection before calling the store unavailable. */
const CONNECT_TIMEOUT_MS = 10_000;

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const sealer = opts.sealer ?? masterKeySealer({ dataDir: opts.dataDir, keyFile: opts.masterKeyFile, shared: opts.databaseUrl !== undefined });
  return opts.databaseUrl ? openPostgres(opts.databaseUrl, sealer) : openPGlite(opts.dataDir, sealer);
}

/**
 * The master key as the store uses it, loaded the first time config is sealed or opened: a store without config vars
 * never needs one, and a cluster controller missing its key fails at the first `config set` (or at start, when the
 * store holds config) with the message that says how to give it one. The embedded store makes DATA/master.key; a
 * shared (PostgreSQL) store never does, since every controller must seal under the same key.
 */
export function masterKeySealer(o: MasterKeyOptions): ConfigSealer {
  let key: MasterKey | null = null;
  const load = (): MasterKey => {
    if (key) return key;
    key = loadMasterKey(o);
    // A key made just now is announced (with a word on backing it up) by loadMasterKey itself.
    if (!key.created) log.info({ source: key.source, keyId: key.keyId }, 'config vars are sealed under this master key');
    return key;
  };
  return { seal: (value) => load().seal(value), unseal: (sealed) => load().unseal<ConfigVars>(sealed) };
}

/** The controller keeps its working set in memory, so PostgreSQL's own cache can be small (saves ~120 MB resident). */
const PGLITE_CONF = ['shared_buffers=16MB'];

const execFileAsync = promisify(execFile);

/**
 * Creates a new store (PGlite's initdb) in a short-lived child process: initdb grows the WebAssembly heap to ~700 MB
 * and a heap never shrinks, so this process then opens the store at the size of any later start. The database is
 * built beside `storeDir` and renamed into place, so a crash halfway leaves no half-made store.
 */
async function createPGliteStore(storeDir: string): Promise<void> {
  const building = `${storeDir}.creating`;
  await rm(building, { recursive: true, force: true });
  const module = import.meta.resolve('@electric-sql/pglite');
  const script = `const { PGlite } = await import(${JSON.stringify(module)});
const db = await PGlite.create({ dataDir: process.argv[1], postgresqlconf: ${JSON.stringify(PGLITE_CONF)} });
await db.close();`;
  try {
    await execFileAsync(process.execPath, ['--input-type=module', '-e', script, building], { timeout: 120_000 });
  } catch (err) {
    await rm(building, { recursive: true, force: true });
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`creating the store failed${stderr ? `: ${stderr.split('\n').slice(-3).join(' ')}` : ''}`, { cause: err });
  }
  await rm(storeDir, { recursive: true, force: true });
  await chmod(building, 0o700);
  await rename(building, storeDir);
}

async function openPGlite(dataDir: string, sealer: ConfigSealer): Promise<Store> {
  const storeDir = join(dataDir, 'store');
  // The store holds every token and secret: enjin's alone.
  await mkdir(storeDir, { recursive: true, mode: 0o700 });
  await chmod(storeDir, 0o700);
  const lock = await lockDataDir(dataDir, join(dataDir, 'store.lock'));
  let db: Kysely<Database> | undefined;
  try {
    let pglite: PGlite;
    try {
      if (!existsSync(join(storeDir, 'PG_VERSION'))) await createPGliteStore(storeDir);
      pglite = await PGlite.create({ dataDir: storeDir, postgresqlconf: PGLITE_CONF });
    } catch (err) {
      throw new EnjinError(
        'store_unavailable',
        `cannot open the embedded store in ${storeDir} (${err instanceof Error ? err.message : String(err)}); check that the directory is readable and writable and was written by PGlite, or start with --data OTHER_DIR`,
        { status: 503, cause: err },
      );
    }
    db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
    await migrateToLatest(db);
    return new SqlStore(db, 'pglite', { location: storeDir, onClose: () => lock.release(), sealer });
  } catch (err) {
    await db?.destroy().catch(() => undefined);
    await lock.release();
    throw err;
  }
}

async function openPostgres(url: string, sealer: ConfigSealer): Promise<Store> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`the database URL is not a URL; expected postgres://user:password@host:port/database`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw invalid(`the database URL ${redactUrl(url)} is not a postgres:// URL; expected postgres://user:password@host:port/database`);
  }
  const shown = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  // An idle client whose server went away emits 'error' on the pool; unhandled, that would kill the
  // controller, which must keep supervising from memory. The next query reports the outage instead.
  pool.on('error', () => undefined);

  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    await pool.end().catch(() => undefined);
    const reason = err instanceof Error ? err.message : String(err);
    throw new EnjinError(
      'store_unavailable',
      `cannot reach PostgreSQL at ${shown} (${reason || 'no reason given'}); check that the server is running and listening there, and that the user, password and database in the URL are right`,
      { status: 503, cause: err },
    );
  }

  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrateToLatest(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    const cause = err instanceof EnjinError && err.cause !== undefined ? err.cause : err;
    throw isConnectionError(cause) ? storeUnavailable(shown, cause) : err;
  }
  return new SqlStore(db, 'postgres', { location: shown, leaderLocks: () => new PostgresLeaderLock(url), sealer });
}
