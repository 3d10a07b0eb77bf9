import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, statSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from './open.ts';

test('a new embedded store is built aside and moved into place; leftovers of a crashed creation are cleared', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-open-'));
  try {
    // What a creation killed halfway would leave: a half-built directory and an empty store directory.
    mkdirSync(join(dir, 'store.creating', 'base'), { recursive: true });
    writeFileSync(join(dir, 'store.creating', 'PG_VERSION'), '17\n');
    mkdirSync(join(dir, 'store'));
    const store = await openStore({ dataDir: dir });
    assert.deepEqual((await store.load()).projects, []);
    await store.close();
    assert.ok(existsSync(join(dir, 'store', 'PG_VERSION')));
    assert.ok(!existsSync(join(dir, 'store.creating')));
    // every token and secret is in there: enjin's alone
    assert.equal(statSync(join(dir, 'store')).mode & 0o777, 0o700);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
