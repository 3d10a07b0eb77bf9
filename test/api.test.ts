// The controller's API on its own: real store, real bus, real HTTP, but no agent, so no node is ready. Every refusal
// carries a code and changes nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { MemoryBus } from '../src/bus/memory.ts';
import { Controller } from '../src/controller/controller.ts';
import { buildApi } from '../src/controller/api/server.ts';
import { openStore } from '../src/store/open.ts';
import { packDirectory } from '../src/artifact/pack.ts';
import type { Store } from '../src/store/store.ts';
import { cleanup, eventually, tempDir } from './support/enjin.ts';
import { buildHostileTarball } from './support/tarballs.ts';

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

  test('the Bearer scheme is case-insensitive (RFC 7235); other schemes are refused', async () => {
    for (const header of [`bearer ${token}`, `BEARER ${token}`, `Bearer   ${token}`]) {
      assert.equal((await call('GET', '/v1/projects', undefined, { authorization: header })).status, 200, header);
    }
    for (const header of [`Basic ${token}`, `Bearer`, `Bearer${token}`, token]) {
      assert.equal((await call('GET', '/v1/projects', undefined, { authorization: header })).body.error.code, 'unauthorized', header);
    }
  });

  test('a control character in an id or a query is a 400 with a code, never a store error', async () => {
    for (const path of ['/v1/jobs/job_%00x', '/v1/jobs/%00', '/v1/projects/a%00b', '/v1/projects/a%01b/versions', '/v1/jobs/x%0Ay/abort', '/v1/versions/ver_%00/package']) {
      const method = path.endsWith('abort') ? 'POST' : 'GET';
      const r = await call(method, path, method === 'POST' ? {} : undefined);
      assert.equal(r.status, 400, path);
      assert.equal(r.body.error.code, 'invalid_id', path);
    }
    for (const query of ['project=%00', 'state=running%00', 'service=a%7F']) {
      const r = await call('GET', `/v1/jobs?${query}`);
      assert.equal(r.status, 400, query);
      assert.equal(r.body.error.code, 'invalid_request', query);
    }
    const r = await call('GET', `/v1/projects/logs-test/logs?cursor=${Buffer.from(JSON.stringify({ x: 'str' })).toString('base64url')}`);
    assert.equal(r.status, 404, 'the project is checked first');
  });

  test('JSON bodies are limited to 1 MiB with a message about JSON; packages only go to the upload route', async () => {
    const big = JSON.stringify({ services: { web: '1' }, pad: 'x'.repeat(2 * 1024 * 1024) });
    const res = await fetch(`${base}/v1/projects/lonely/scale`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: big });
    const body = (await res.json()) as any;
    assert.equal(res.status, 413);
    assert.equal(body.error.code, 'body_too_large');
    assert.match(body.error.message, /1 MiB of JSON/);
    assert.doesNotMatch(body.error.message, /enjinignore/);
    const onUpload = await fetch(`${base}/v1/projects/lonely/deploys`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: big });
    assert.equal(onUpload.status, 413, 'the upload route buffers no more JSON than any other');
    assert.equal(((await onUpload.json()) as any).error.code, 'body_too_large');
    const gz = await call('POST', '/v1/projects/lonely/scale', new Uint8Array(1000));
    assert.equal(gz.status, 415);
    assert.equal(gz.body.error.code, 'unsupported_media_type');
  });

  test("another project's generated names are refused at their line and column; a project's own and plain names are not", async () => {
    const claim = (project: string, hosts: string[]) =>
      pack({ 'enjin.yaml': `project: ${project}\nservices:\n  web:\n    command: node s.js\n    hostnames:\n${hosts.map((h) => `      - "${h}"\n`).join('')}` });
    for (const host of ['web.canary.localhost', 'api.canary.localhost', '*.canary.localhost', 'deep.web.canary.localhost', 'WEB.Canary.localhost']) {
      const r = await call('POST', '/v1/projects/thief/deploys', await claim('thief', ['app.localhost', host]));
      assert.equal(r.status, 409, host);
      assert.equal(r.body.error.code, 'hostname_taken', host);
      assert.deepEqual(r.body.error.details.map((d: any) => [d.file, d.line, d.column]), [['enjin.yaml', 7, 9]], host);
      assert.match(r.body.error.details[0].message, /generated names of project canary/);
    }
    // Its own namespace and names outside any project's are fine: the deploy gets as far as placement.
    const own = await call('POST', '/v1/projects/thief/deploys', await claim('thief', ['app.localhost', 'admin.thief.localhost', '*.thief.localhost']));
    assert.equal(own.body.error.code, 'no_ready_nodes');
    assert.equal(controller.state.projectByName(controller.defaultWorkspace().id, 'thief'), undefined, 'refused requests store no project');
  });

  test('IP addresses and bare localhost are refused as hostnames', async () => {
    for (const host of ['localhost', '0x7f000001', '2130706433', '127.0.0.1', '0177.0.0.1', '::1', '[::1]']) {
      const r = await call('POST', '/v1/projects/ips/deploys', await pack({ 'enjin.yaml': `project: ips\nservices:\n  web:\n    command: x\n    hostnames: ["${host}"]\n` }));
      assert.equal(r.body.error.code, 'manifest_invalid', host);
      assert.equal(r.body.error.details[0].line, 5, host);
    }
  });

  test('an enjin.yaml over 1 MiB is reported as too large, with the limit', async () => {
    const r = await call('POST', '/v1/projects/huge/deploys', await pack({ 'enjin.yaml': `project: huge\nservices:\n  web:\n    command: x\n# ${'x'.repeat(1024 * 1024)}\n` }));
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'manifest_too_large');
    assert.match(r.body.error.message, /at most 1 MiB/);
  });

  test('refused uploads leave no file and no state behind', async () => {
    const packagesDir = join(dir, 'controller', 'packages');
    const before = readdirSync(packagesDir);
    // Claims 600 MB, sends 1 KiB and waits: the answer must come from the header alone.
    const declared = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = http.request(`${base}/v1/projects/big/deploys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(600 * 1024 ** 2) },
      }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.write(Buffer.alloc(1024));
    });
    assert.equal(declared.status, 413);
    assert.equal(declared.body.error.code, 'package_too_large');
    const unsafe = await call('POST', '/v1/projects/hello/deploys', new Uint8Array(await buildHostileTarball('../escape')));
    assert.equal(unsafe.body.error.code, 'package_unsafe');
    const junk = await call('POST', '/v1/projects/junk/deploys', new Uint8Array(Buffer.from('not gzip at all')));
    assert.equal(junk.body.error.code, 'package_invalid');
    const noNode = await call('POST', '/v1/projects/stored/deploys', await pack({ 'enjin.yaml': 'project: stored\nservices:\n  web:\n    command: x\n' }));
    assert.equal(noNode.body.error.code, 'no_ready_nodes');
    await eventually(() => controller.packages.uploadsInProgress().length === 0, 'uploads to be removed', 10_000);
    assert.deepEqual(readdirSync(packagesDir), before, 'no package and no temporary file was kept');
    assert.equal((await store.load()).versions.length, 0, 'no version was stored');
  });

  test('at most 32 uploads are received at once; clients that go away mid-upload leave nothing', async () => {
    const hanging: http.ClientRequest[] = [];
    try {
      for (let i = 0; i < 32; i++) {
        const req = http.request(`${base}/v1/projects/slow${i}/deploys`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' } });
        req.on('error', () => {});
        req.write(Buffer.alloc(1024));
        hanging.push(req);
      }
      await eventually(() => controller.packages.uploadsInProgress().length === 32, '32 uploads in progress', 30_000);
      const ninth = await call('POST', '/v1/projects/slow9/deploys', await pack({ 'enjin.yaml': 'project: slow9\nservices:\n  web:\n    command: x\n' }));
      assert.equal(ninth.status, 429);
      assert.equal(ninth.body.error.code, 'too_many_uploads');
    } finally {
      for (const req of hanging) req.destroy();
    }
    await eventually(() => controller.packages.uploadsInProgress().length === 0, 'aborted uploads to be removed', 30_000);
    const after = await call('POST', '/v1/projects/slow9/deploys', await pack({ 'enjin.yaml': 'project: slow9\nservices:\n  web:\n    command: x\n' }));
    assert.equal(after.body.error.code, 'no_ready_nodes', 'slots are given back');
  });

  test('the OpenAPI document lists every route', async () => {
    const r = await call('GET', '/openapi.json');
    for (const path of ['/v1/projects', '/v1/projects/{project}/deploys', '/v1/projects/{project}/scale', '/v1/jobs/{id}', '/v1/jobs/{id}/abort', '/v1/instances', '/v1/stats']) {
      assert.ok(r.body.paths[path], `${path} is documented`);
    }
  });
});
