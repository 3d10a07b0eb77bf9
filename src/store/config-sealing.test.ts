// Config vars in the store: sealed on the way in, opened on the way out, never in the database files in plain text;
// a store opened with another master key refuses to load rather than reading config as empty.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { Project, Version } from '../core/model.ts';
import { openStore } from './open.ts';

function filesHolding(dir: string, needle: Buffer): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    if (s.isDirectory()) out.push(...filesHolding(p, needle));
    else if (readFileSync(p).includes(needle)) out.push(p);
  }
  return out;
}

test('config of projects and versions is sealed at rest and opened on load', { timeout: 300_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'enjin-sealing-'));
  const secret = `value-${randomBytes(16).toString('hex')}`;
  try {
    const store = await openStore({ dataDir });
    const at = new Date().toISOString();
    await store.insertWorkspace({ id: 'ws_1', name: 'default', createdAt: at });
    const project: Project = { id: 'prj_1', workspaceId: 'ws_1', name: 'shop', currentVersionId: null, routedVersionId: null, scale: {}, config: { project: { EARLY: secret }, services: {} }, createdAt: at, updatedAt: at };
    await store.saveProject(project);
    const manifest = { project: 'shop', prepare: [], env: {}, services: {} };
    const v1: Version = { id: 'ver_1', projectId: 'prj_1', number: 1, sha256: 'a'.repeat(64), size: 10, manifest, createdAt: at, cause: { kind: 'deploy', description: 'deploy', by: 'admin' } };
    const v2: Version = { ...v1, id: 'ver_2', number: 2, buildId: 'ver_1', config: { project: { DATABASE_URL: secret }, services: { web: { ONLY_WEB: secret } } }, cause: { kind: 'config', description: 'set DATABASE_URL', by: 'admin' } };
    await store.insertVersion(v1);
    await store.insertVersion(v2);
    await store.close();

    assert.deepEqual(filesHolding(dataDir, Buffer.from(secret)), [], 'no file of the store holds the value in plain text');
    const key = readFileSync(join(dataDir, 'master.key'), 'utf8');
    assert.ok(key.trim().length >= 32, 'the embedded store made its master key');
    assert.equal(statSync(join(dataDir, 'master.key')).mode & 0o777, 0o600);

    const again = await openStore({ dataDir });
    const snap = await again.load();
    await again.close();
    assert.deepEqual(snap.projects[0].config, project.config);
    assert.deepEqual(snap.versions.find((v) => v.id === 'ver_2'), v2);
    assert.deepEqual(snap.versions.find((v) => v.id === 'ver_1'), v1, 'a version without config loads without one');

    // Another key: refused with a code that says what to do, not loaded as "no config".
    await assert.rejects(openStore({ dataDir, sealer: undefined, masterKeyFile: undefined }).then(async (s) => {
      try {
        process.env.ENJIN_MASTER_KEY = randomBytes(32).toString('base64');
        return await s.load();
      } finally {
        delete process.env.ENJIN_MASTER_KEY;
        await s.close();
      }
    }), (err) => err instanceof EnjinError && err.code === 'master_key_mismatch');
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
