// Events in the store: numbered in the order written, listed oldest first (the newest `limit`, or after a seq),
// filtered by project and service, and pruned by age.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from './open.ts';

test('events: order, filters, following and pruning', { timeout: 300_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'enjin-events-'));
  try {
    const store = await openStore({ dataDir });
    try {
      const at = (m: number) => new Date(Date.UTC(2030, 0, 1, 0, m)).toISOString();
      await store.appendEvents([
        { kind: 'node-down', at: at(1), nodeId: 'node_a', message: 'node a is down' },
        { kind: 'instance-exited', at: at(2), project: 'shop', service: 'web', instanceId: 'inst_1', message: 'web exited' },
      ]);
      await store.appendEvents([{ kind: 'instance-failed', at: at(3), project: 'shop', service: 'worker', message: 'worker failed' }]);
      await store.appendEvents([{ kind: 'instance-exited', at: at(4), project: 'blog', service: 'web', message: 'blog exited' }]);

      const all = await store.listEvents({ limit: 10 });
      assert.deepEqual(all.map((e) => e.message), ['node a is down', 'web exited', 'worker failed', 'blog exited']);
      assert.ok(all.every((e, i) => i === 0 || e.seq > all[i - 1].seq), 'numbered in the order written');
      assert.deepEqual(all[1], { seq: all[1].seq, kind: 'instance-exited', at: at(2), project: 'shop', service: 'web', instanceId: 'inst_1', message: 'web exited' });
      assert.equal(all[0].project, undefined, 'no project: absent, not null');

      assert.deepEqual((await store.listEvents({ limit: 2 })).map((e) => e.message), ['worker failed', 'blog exited'], 'the newest, oldest first');
      assert.deepEqual((await store.listEvents({ project: 'shop', limit: 10 })).map((e) => e.message), ['web exited', 'worker failed']);
      assert.deepEqual((await store.listEvents({ project: 'shop', service: 'worker', limit: 10 })).map((e) => e.message), ['worker failed']);
      assert.deepEqual((await store.listEvents({ afterSeq: all[2].seq, limit: 10 })).map((e) => e.message), ['blog exited'], 'following: what came after');

      assert.equal(await store.deleteEventsBefore(at(3)), 2);
      assert.deepEqual((await store.listEvents({ limit: 10 })).map((e) => e.message), ['worker failed', 'blog exited']);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
