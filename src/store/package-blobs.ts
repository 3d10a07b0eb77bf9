// Package blobs as rows: one package_blobs row per package and its bytes in package_chunks, written in one transaction.
import type { Kysely } from 'kysely';
import { invalid } from '../core/errors.ts';
import type { Database } from './schema.ts';
import type { PackageBlobs, StoredPackage } from './store.ts';
import { translateDatabaseError } from './store-errors.ts';

export class SqlPackageBlobs implements PackageBlobs {
  readonly #db: Kysely<Database>;
  readonly #location: string;

  constructor(db: Kysely<Database>, location: string) {
    this.#db = db;
    this.#location = location;
  }

  async put(sha256: string, size: number, chunkSize: number, chunks: AsyncIterable<Uint8Array>): Promise<boolean> {
    if (!(chunkSize > 0) || !Number.isInteger(chunkSize)) throw invalid(`a package chunk size must be a positive integer, not ${chunkSize}`);
    const count = Math.ceil(size / chunkSize);
    return this.#run(() =>
      this.#db.transaction().execute(async (trx) => {
        // Two controllers storing the same package: the second insert waits for the first transaction, then does
        // nothing, and this one stops there.
        const inserted = await trx
          .insertInto('package_blobs')
          .values({ sha256, size, chunk_size: chunkSize, chunks: count, created_at: new Date().toISOString() })
          .onConflict((oc) => oc.column('sha256').doNothing())
          .returning('sha256')
          .executeTakeFirst();
        if (!inserted) return false;
        let idx = 0;
        let total = 0;
        for await (const chunk of chunks) {
          const last = idx === count - 1;
          // A short chunk anywhere but at the end would shift every offset after it: refuse, so the transaction rolls back.
          if (idx >= count || (last ? chunk.length !== size - total : chunk.length !== chunkSize)) {
            throw new Error(`package ${sha256}: chunk ${idx} has ${chunk.length} bytes, which does not fit a package of ${size} bytes in chunks of ${chunkSize}`);
          }
          await trx.insertInto('package_chunks').values({ sha256, idx, data: chunk }).execute();
          total += chunk.length;
          idx++;
        }
        if (idx !== count) throw new Error(`package ${sha256}: ${total} bytes arrived, not the declared ${size}`);
        return true;
      }),
    );
  }

  async get(sha256: string): Promise<StoredPackage | null> {
    const row = await this.#run(() => this.#db.selectFrom('package_blobs').selectAll().where('sha256', '=', sha256).executeTakeFirst());
    return row ? { sha256: row.sha256, size: Number(row.size), chunkSize: row.chunk_size, chunks: row.chunks } : null;
  }

  async readChunks(sha256: string, first: number, last: number): Promise<Buffer[]> {
    const rows = await this.#run(() =>
      this.#db.selectFrom('package_chunks').select(['idx', 'data']).where('sha256', '=', sha256).where('idx', '>=', first).where('idx', '<=', last).orderBy('idx').execute(),
    );
    return rows.map((r) => Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
  }

  async delete(sha256: string): Promise<void> {
    // The chunks go with their package row (on delete cascade).
    await this.#run(() => this.#db.deleteFrom('package_blobs').where('sha256', '=', sha256).execute());
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateDatabaseError(err, this.#location);
    }
  }
}
