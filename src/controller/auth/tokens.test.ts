import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenAuth } from './tokens.ts';
import { openStore } from '../../store/open.ts';

test('a checked token is trusted from memory for a while, so requests need no store query; then the store is asked again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-tokens-'));
  const store = await openStore({ dataDir: dir });
  let closed = false;
  try {
    // A stepped clock: on a loaded machine closing the store alone can take longer than any real-time TTL.
    let now = 1_000_000;
    const auth = new TokenAuth(store, { checkedTtlMs: 60_000, now: () => now });
    const token = await auth.create('test');
    assert.equal(await auth.check(token), 'admin');
    assert.equal(await auth.check(`${token}x`), null, 'a wrong token is refused');
    assert.equal(await auth.check(auth.nodeToken), 'node');
    await store.close();
    closed = true;
    // The store is gone: only a token remembered from the check above can pass.
    assert.equal(await auth.check(token), 'admin');
    await assert.rejects(auth.check(`${token}y`), 'an unknown token still needs the store');
    now += 60_001;
    await assert.rejects(auth.check(token), 'once the memory expires the store is asked again');
  } finally {
    if (!closed) await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
