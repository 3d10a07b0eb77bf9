// The controller's API on its own: real store, real bus, real HTTP, but no agent, so no node is ready. Every refusal
// carries a code and changes nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { openStore } from '../src/store/open.ts';
import { packDirectory } from '../src/artifact/pack.ts';
import type { Store } from '../src/store/store.ts';
import { cleanup, tempDir } from './support/enjin.ts';

describe('controller API without nodes', () => {
  let dir: string;
  let store: Store;
  let controller: Controller;
  let api: Awaited<ReturnType<typeof buildApi>>;
  let base: string;
  let token: string;

  before(async () => {
    dir = tempDir('api');
    store = await openStore({ dataDir: dir });
    controller = await Controller.start({ store, bus: new MemoryBus(), dataDir: join(dir, 'controller'), domain: 'localhost', reconcileIntervalMs: 60_000 });
    api = await buildApi(controller);
    await api.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    controller.apiUrl = base;
    token = await controller.auth.create('test');
  });

  after(async () => {
    await api.close();
    await controller.stop();
    await store.close();
    cleanup(dir);
  });

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body instanceof Uint8Array ? { 'content-type': 'application/gzip' } : body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body instanceof Uint8Array ? new Blob([new Uint8Array(body)]) : body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  const pack = async (files: Record<string, string>) => {
    const app = tempDir('pkg');
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(app, name, '..'), { recursive: true });
      writeFileSync(join(app, name), text);
    }
    const { tarball } = await packDirectory(app);
    cleanup(app);
    return new Uint8Array(tarball);
  };

  test('healthz is not ready until the composing process says so', async () => {
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
    controller.ready = true;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });

  test('a wrong token is refused with a code', async () => {
    const r = await call('GET', '/v1/projects', undefined, { authorization: 'Bearer nope' });
    assert.equal(r.status, 401);
    assert.equal(r.body.error.code, 'unauthorized');
    const node = await call('GET', '/v1/projects', undefined, { authorization: `Bearer ${controller.nodeToken}` });
    assert.equal(node.status, 403, 'the node token only downloads packages');
  });

  test('unknown things are 404 with a code and a hint', async () => {
    const r = await call('GET', '/v1/projects/ghost');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
    assert.match(r.body.error.message, /enjin projects/);
    assert.equal((await call('GET', '/v1/nope')).body.error.code, 'not_found');
  });

  test('a deploy with no ready node is refused with 503 and creates no desired state', async () => {
    const pkg = await pack({ 'enjin.yaml': 'project: lonely\nservices:\n  web:\n    command: node s.js\n' });
    const r = await call('POST', '/v1/projects/lonely/deploys', pkg);
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'no_ready_nodes');
    const p = controller.state.projectByName(controller.defaultWorkspace().id, 'lonely');
    assert.equal(p?.currentVersionId ?? null, null, 'the desired version did not change');
    assert.equal((await store.load()).projects.find((x) => x.name === 'lonely')?.currentVersionId ?? null, null);
  });

  test('a package without a manifest, with the wrong project, or not a tarball is refused', async () => {
    let r = await call('POST', '/v1/projects/empty/deploys', await pack({ 'README.md': 'hi' }));
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'manifest_missing');
    r = await call('POST', '/v1/projects/other/deploys', await pack({ 'enjin.yaml': 'project: mine\nservices:\n  web:\n    command: x\n' }));
    assert.equal(r.body.error.code, 'project_mismatch');
    r = await call('POST', '/v1/projects/junk/deploys', new Uint8Array(Buffer.from('this is not gzip')));
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'package_invalid');
    r = await call('POST', '/v1/projects/bad/deploys', await pack({ 'enjin.yaml': 'project: bad\nservices:\n  web:\n    command: [1\n' }));
    assert.equal(r.body.error.code, 'manifest_invalid');
    assert.equal(r.body.error.details[0].file, 'enjin.yaml');
    assert.ok(r.body.error.details[0].line >= 4);
    assert.deepEqual((await call('GET', '/v1/projects')).body.projects.map((p: { name: string }) => p.name).filter((n: string) => n !== 'lonely'), []);
  });

  test('bad request bodies get 400 invalid_request', async () => {
    const r = await call('POST', '/v1/projects/lonely/scale', { services: { web: 'lots' } });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid_request');
  });

  test('the OpenAPI document lists every route', async () => {
    const r = await call('GET', '/openapi.json');
    for (const path of ['/v1/projects', '/v1/projects/{project}/deploys', '/v1/projects/{project}/scale', '/v1/jobs/{id}', '/v1/jobs/{id}/abort', '/v1/instances', '/v1/stats']) {
      assert.ok(r.body.paths[path], `${path} is documented`);
    }
  });
});
