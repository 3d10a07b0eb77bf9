// What the API accepts from the network, against the real `enjin up`: large uploads stream to disk with bounded
// memory, refused uploads leave nothing, concurrent deploys are decided one at a time and a refused one stores
// nothing, scale keys are only the project's services, and a project's generated names stay its own.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants, createGzip } from 'node:zlib';
import { Header } from 'tar';
import { packDirectory } from '../src/artifact/pack.ts';
import { EnjinProcess, cleanup, eventually, tempDir, viaRouter } from './support/enjin.ts';

const MiB = 1024 ** 2;

/** The peak resident memory of a process so far, from the kernel (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(kb![1]) * 1024;
}

function tarHeader(path: string, size: number): Buffer {
  const block = Buffer.alloc(512);
  new Header({ path, type: 'File', mode: 0o644, uid: 0, gid: 0, size, mtime: new Date(0) }).encode(block);
  return block;
}

/** A tar (not yet gzipped) of enjin.yaml plus `blob` of `size` bytes from `chunk`, generated as it is read. */
function generatedTar(manifest: string, size: number, chunk: () => Buffer): Readable {
  return Readable.from((function* () {
    const m = Buffer.from(manifest);
    yield tarHeader('enjin.yaml', m.length);
    yield Buffer.concat([m, Buffer.alloc((512 - (m.length % 512)) % 512)]);
    yield tarHeader('blob', size);
    for (let sent = 0; sent < size;) {
      const c = chunk().subarray(0, Math.min(MiB, size - sent));
      sent += c.length;
      yield c;
    }
    yield Buffer.alloc((512 - (size % 512)) % 512);
    yield Buffer.alloc(1024);
  })(), { objectMode: false });
}

/** POSTs a stream (chunked) and returns the status and JSON answer; the sha256 of what was sent is computed on the way. */
async function postStream(url: string, token: string, source: Readable): Promise<{ status: number; body: any; sha256: string; sent: number }> {
  const hash = createHash('sha256');
  let sent = 0;
  const tap = new Transform({ transform(c: Buffer, _e, cb) { hash.update(c); sent += c.length; cb(null, c); } });
  const req = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' } });
  const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
  });
  // The server may answer (and close) before the whole body is sent: that is an answer, not a failure.
  await pipeline(source, tap, req).catch(() => {});
  const r = await answer;
  return { ...r, sha256: hash.digest('hex'), sent };
}

describe('API limits against enjin up', () => {
  let dataDir: string;
  let enjin: EnjinProcess;
  const apps: string[] = [];

  before(async () => {
    dataDir = tempDir('limits');
    enjin = await EnjinProcess.start(dataDir);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    cleanup(dataDir, ...apps);
  });

  const packagesDir = () => join(dataDir, 'controller', 'packages');
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${enjin.api}${path}`, {
      method,
      headers: { authorization: `Bearer ${enjin.token}`, ...(body === undefined ? {} : body instanceof Uint8Array ? { 'content-type': 'application/gzip' } : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : body instanceof Uint8Array ? new Blob([new Uint8Array(body)]) : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const app = (files: Record<string, string>) => {
    const dir = tempDir('limits-app');
    apps.push(dir);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };

  test('a 256 MiB upload streams to disk: peak memory stays bounded and the stored bytes are the sent ones', async () => {
    const warm = await call('POST', '/v1/projects/big/deploys?deploy=false', new Uint8Array((await packDirectory(app({ 'enjin.yaml': 'project: big\nservices:\n  web:\n    command: x\n' }))).tarball));
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
    const before = peakRss(enjin.child.pid!);
    const random = randomBytes(MiB);
    // Incompressible data, stored without compression so the test spends its time on the upload, not on gzip.
    const gzip = createGzip({ level: constants.Z_NO_COMPRESSION });
    const tar = generatedTar('project: big\nservices:\n  web:\n    command: x\n', 256 * MiB, () => random);
    const r = await postStream(`${enjin.api}/v1/projects/big/deploys?deploy=false`, enjin.token, tar.pipe(gzip));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.sent > 256 * MiB);
    assert.equal(r.body.version.sha256, r.sha256, 'the hash taken while streaming is the hash of what was sent');
    assert.equal(statSync(join(packagesDir(), `${r.sha256}.tar.gz`)).size, r.sent);
    const grew = peakRss(enjin.child.pid!) - before;
    // Buffering the body would hold it at least once (256 MiB, twice while joining chunks); streaming holds buffers.
    assert.ok(grew < 128 * MiB, `peak RSS grew by ${Math.round(grew / MiB)} MiB during a 256 MiB upload`);
  });

  test('an oversized or hostile upload is refused and leaves nothing behind', async () => {
    const kept = readdirSync(packagesDir()).sort();
    // A gzip bomb: 1.1 GiB of zeros in a valid archive, about 1 MiB on the wire.
    const bomb = await postStream(`${enjin.api}/v1/projects/big/deploys`, enjin.token,
      generatedTar('project: big\nservices:\n  web:\n    command: x\n', 1100 * MiB, () => Buffer.alloc(MiB)).pipe(createGzip({ level: 1 })));
    assert.equal(bomb.status, 422);
    assert.equal(bomb.body.error.code, 'package_unsafe');
    // Past 512 MiB on the wire: cut off where the limit is crossed, whatever the client meant to send.
    const random = randomBytes(MiB);
    const huge = await postStream(`${enjin.api}/v1/projects/big/deploys`, enjin.token,
      generatedTar('project: big\nservices:\n  web:\n    command: x\n', 600 * MiB, () => random).pipe(createGzip({ level: constants.Z_NO_COMPRESSION })));
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, 'package_too_large');
    await eventually(() => readdirSync(packagesDir()).sort().join() === kept.join(), 'no upload file left behind', 30_000);
    assert.equal((await call('GET', '/v1/projects/big/versions')).body.versions.length, 2, 'only the accepted uploads are versions');
  });

  test('30 concurrent deploys of one project: one runs, the others wait in its queue; nothing duplicated, nothing lost', { timeout: 600_000 }, async () => {
    // Slow to become ready, so the first tree is still running while the other requests are decided.
    const server = "require('http').createServer((q, s) => s.end('canary ' + process.env.N)).listen(process.env.PORT)";
    const packages = await Promise.all(Array.from({ length: 30 }, async (_, i) =>
      new Uint8Array((await packDirectory(app({
        'enjin.yaml': `project: canary\nenv:\n  N: "${i}"\nservices:\n  web:\n    command: sleep 3 && node server.js\n    health: { start_timeout: 120 }\n`,
        'server.js': server,
      }))).tarball)));
    const answers = await Promise.all(packages.map((p) => call('POST', '/v1/projects/canary/deploys', p)));
    assert.deepEqual(answers.filter((a) => a.status !== 202), [], 'every deploy is accepted');
    const versions = (await call('GET', '/v1/projects/canary/versions')).body.versions;
    assert.equal(versions.length, 30, 'one version per deploy');
    assert.equal(new Set(versions.map((v: { number: number }) => v.number)).size, 30);
    assert.equal(new Set(answers.map((a) => a.body.job.id)).size, 30, 'one tree per deploy');
    const queued = answers.filter((a) => a.body.job.state === 'queued');
    assert.equal(queued.length, 29, 'one runs, the others wait');
    assert.deepEqual(queued.map((a) => a.body.job.queue.position).sort((x: number, y: number) => x - y), Array.from({ length: 29 }, (_, k) => k + 1));
    assert.equal(readdirSync(packagesDir()).filter((n) => n.endsWith('.upload')).length, 0);
    // The queue obeys: all but the last in line are taken out, and the last one is what ends up serving.
    const last = queued.find((a) => a.body.job.queue.position === 29)!;
    for (const a of queued) if (a !== last) assert.equal((await call('POST', `/v1/jobs/${a.body.job.id}/abort`)).body.job.state, 'aborted');
    const n = answers.indexOf(last);
    await eventually(async () => (await viaRouter(enjin.routerPort, 'web.canary.localhost')).body === `canary ${n}`, `canary ${n} to answer`, 240_000);
  });

  test("scale takes only the project's services as keys", async () => {
    await eventually(async () => (await call('GET', '/v1/projects/canary')).body.project.services[0].running === 1, 'the deploy to finish', 120_000);
    for (const key of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const r = await call('POST', '/v1/projects/canary/scale', { services: { [key]: '5' } });
      assert.equal(r.status, 404, key);
      assert.equal(r.body.error.code, 'unknown_service', key);
    }
    const proto = await fetch(`${enjin.api}/v1/projects/canary/scale`, { method: 'POST', headers: { authorization: `Bearer ${enjin.token}`, 'content-type': 'application/json' }, body: '{"services":{"__proto__":{"web":"5"}}}' });
    assert.equal(proto.status, 400);
    const p = (await call('GET', '/v1/projects/canary')).body.project;
    assert.deepEqual(p.services.map((s: { name: string; desired: number }) => [s.name, s.desired]), [['web', 1]], 'nothing was stored');
  });

  test("another project cannot take canary's generated name; the router keeps serving canary there", async () => {
    const thief = await call('POST', '/v1/projects/thief/deploys', new Uint8Array((await packDirectory(app({
      'enjin.yaml': 'project: thief\nservices:\n  web:\n    command: node server.js\n    hostnames: [thief.localhost, web.canary.localhost]\n',
      'server.js': "require('http').createServer((q, s) => s.end('thief')).listen(process.env.PORT)",
    }))).tarball));
    assert.equal(thief.status, 409);
    assert.equal(thief.body.error.code, 'hostname_taken');
    assert.deepEqual([thief.body.error.details[0].file, thief.body.error.details[0].line, thief.body.error.details[0].column], ['enjin.yaml', 5, 34]);
    assert.equal((await call('GET', '/v1/projects/thief')).status, 404, 'the refused deploy created no project');
    assert.match((await viaRouter(enjin.routerPort, 'web.canary.localhost')).body, /^canary /);
  });
});
