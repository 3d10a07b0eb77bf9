// Tokens are checked in memory: the API keeps answering with the store closed, and a token made elsewhere is found.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenAuth, hashToken } from './tokens.ts';
import { openStore } from '../../store/open.ts';

test('tokens are checked in memory, so a closed store does not stop them; a miss asks the store at most every few seconds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-tokens-'));
  const store = await openStore({ dataDir: dir });
  let closed = false;
  try {
    // A stepped clock: on a loaded machine closing the store alone can take longer than any real-time interval.
    let now = 1_000_000;
    const auth = new TokenAuth(store, { missRefreshMs: 3_000, now: () => now });
    await auth.start();
    const token = await auth.create('test');
    assert.equal(await auth.check(token), 'admin');
    assert.equal(await auth.check(`${token}x`), null, 'a wrong token is refused');

    // Made by "another controller": written to the store directly, unknown to this memory until a miss refreshes it.
    const other = 'enj_made_elsewhere';
    await store.insertToken({ id: 'tok_other', name: 'other', hash: hashToken(other), workspaceId: null, createdAt: new Date().toISOString() });
    now += 3_001;
    assert.equal(await auth.check(other), 'admin', 'a miss reloads the tokens');
    assert.equal(await auth.check(`${token}x`), null, 'a wrong token is refused (no reload: one just happened)');

    await store.close();
    closed = true;
    now += 60_000;
    // The store is gone: every known token still passes, from memory.
    assert.equal(await auth.check(token), 'admin');
    assert.equal(await auth.check(other), 'admin');
    // An unknown one cannot be vouched for: the store is asked, and its failure is the answer (a 503, not a 401).
    await assert.rejects(auth.check(`${token}y`));
    await assert.rejects(auth.check(`${token}z`), 'within the interval the failure stands without asking again');
    auth.stop();
  } finally {
    if (!closed) await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
