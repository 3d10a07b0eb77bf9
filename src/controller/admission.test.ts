// Admission against a real PostgreSQL: single-use tokens under concurrent joins, expiry, reusable tokens, key checks,
// rejoining with the same key, the admitted key ring, and the limit on failed joins.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { startPostgres, type TestPostgres } from '../../test/support/postgres.ts';
import { openStore } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { EnjinError } from '../core/errors.ts';
import { Admission, AdmittedKeys, ControllerKeys, type NatsForNodes } from './admission.ts';
import { MemoryBus } from '../bus/memory.ts';
import { Controller } from './controller.ts';
import { buildApi } from './api/server.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JoinFailureLimiter, joinRoutes } from './api/routes/join.ts';
import Fastify from 'fastify';
import { joinCluster } from '../client/client.ts';
import { ControllerState } from './state.ts';

const NATS: NatsForNodes = { url: 'nats://10.0.0.1:4222' };

function ed25519(): string {
  return generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
}

function joinBody(token: string, publicKey: string, extra: Record<string, unknown> = {}) {
  return { token, publicKey, name: 'host-1', roles: ['agent'], labels: { zone: 'a' }, address: '10.0.0.5', compartment: 'dc1/rack-a', capacity: { cpus: 2, memoryBytes: 2 ** 30, ports: 100 }, ...extra };
}

async function eventually(check: () => boolean | undefined, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) assert.fail('the condition did not come true in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function refusal(p: Promise<unknown>): Promise<EnjinError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof EnjinError, `expected an EnjinError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('admission', () => {
  let pg: TestPostgres;
  let store: Store;
  let state: ControllerState;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  let admission: Admission;

  before(async () => {
    pg = await startPostgres();
    store = await openStore({ dataDir: '/nonexistent', databaseUrl: pg.url });
    state = new ControllerState(await store.load());
    admission = new Admission({ store, state, nats: NATS, now: () => clock });
  });
  after(async () => {
    await store?.close();
    await pg?.stop();
  });

  test('a join creates the node row with its key, and the same key joining again keeps its id', async () => {
    const key = ed25519();
    const { token, reusable, expiresAt } = await admission.createToken();
    assert.equal(reusable, false);
    assert.equal(expiresAt, new Date(clock + 3600_000).toISOString());
    const first = await admission.join(joinBody(token, key));
    assert.match(first.nodeId, /^node_/);
    assert.equal(first.rejoined, false);
    assert.deepEqual(first.nats, NATS);
    const node = state.nodes.get(first.nodeId)!;
    assert.equal(node.publicKey, key);
    assert.deepEqual(node.roles, ['agent']);
    assert.equal(node.compartment, 'dc1/rack-a');
    assert.equal(node.status, 'down', 'ready only once it reports');
    const stored = (await store.load()).nodes.find((n) => n.id === first.nodeId);
    assert.equal(stored?.publicKey, key);

    const again = await admission.join(joinBody((await admission.createToken()).token, key, { name: 'host-1b', labels: { zone: 'b' } }));
    assert.equal(again.nodeId, first.nodeId);
    assert.equal(again.rejoined, true);
    assert.equal(state.nodes.get(first.nodeId)!.name, 'host-1b');
    assert.equal([...state.nodes.values()].filter((n) => n.publicKey === key).length, 1);
  });

  test('a single-use token admits exactly one of many concurrent joins', async () => {
    const { token } = await admission.createToken();
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, k) => admission.join(joinBody(token, ed25519(), { name: `racer-${k}` }))));
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.equal(ok.length, 1, 'exactly one join spends the token');
    for (const r of results) {
      if (r.status === 'rejected') {
        assert.equal((r.reason as EnjinError).code, 'join_token_invalid');
        assert.equal((r.reason as EnjinError).status, 401);
        assert.match((r.reason as EnjinError).message, /already used/);
      }
    }
    assert.equal([...state.nodes.values()].filter((n) => n.name.startsWith('racer-')).length, 1);
  });

  test('a token expires; a reusable one admits many hosts until then', async () => {
    const { token } = await admission.createToken({ ttlSeconds: 60, reusable: true });
    const a = await admission.join(joinBody(token, ed25519(), { name: 'reuse-a' }));
    const b = await admission.join(joinBody(token, ed25519(), { name: 'reuse-b' }));
    assert.notEqual(a.nodeId, b.nodeId);
    clock += 61_000;
    const late = await refusal(admission.join(joinBody(token, ed25519(), { name: 'reuse-c' })));
    assert.equal(late.code, 'join_token_invalid');
    assert.match(late.message, /expired/);
    const unknown = await refusal(admission.join(joinBody('enjoin_not-a-real-one', ed25519())));
    assert.match(unknown.message, /not a join token of this cluster/);
  });

  test('bad requests are refused field by field, before the token is spent', async () => {
    const { token } = await admission.createToken();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ publicKey: rsa }, /rsa, not Ed25519/],
      [{ publicKey: 'bm90IGEga2V5' }, /not a base64 SPKI DER key/],
      [{ publicKey: 'not base64!' }, /base64/],
      [{ roles: [] }, /roles must be a non-empty list/],
      [{ roles: ['controller'] }, /not "controller"/],
      [{ name: 'bad name' }, /name "bad name"/],
      [{ address: 'http://x' }, /address/],
      [{ compartment: 'dc1//rack' }, /compartment/],
      [{ labels: { zone: 3 } }, /label zone/],
      [{ capacity: { cpus: 0, memoryBytes: 1, ports: 1 } }, /capacity.cpus/],
      [{ nodeId: 'node.with.dots' }, /nodeId/],
    ];
    for (const [extra, message] of cases) {
      const err = await refusal(admission.join(joinBody(token, ed25519(), extra)));
      assert.equal(err.status, 400, `${JSON.stringify(extra)} → ${err.message}`);
      assert.match(err.message, message);
    }
    const missing = await refusal(admission.join({ token }));
    assert.match(missing.message, /publicKey is missing/);
    // None of those spent it.
    const ok = await admission.join(joinBody(token, ed25519(), { name: 'patient' }));
    assert.match(ok.nodeId, /^node_/);
  });

  test('a free node id proposed by the identity is kept; a taken one is not', async () => {
    const taken = [...state.nodes.keys()][0];
    const fresh = await admission.join(joinBody((await admission.createToken()).token, ed25519(), { nodeId: 'node_proposed1', name: 'proposer' }));
    assert.equal(fresh.nodeId, 'node_proposed1');
    const other = await admission.join(joinBody((await admission.createToken()).token, ed25519(), { nodeId: taken, name: 'thief' }));
    assert.notEqual(other.nodeId, taken);
  });

  test('ttl outside 1 s .. 30 days is refused', async () => {
    assert.equal((await refusal(admission.createToken({ ttlSeconds: 0 }))).status, 400);
    assert.equal((await refusal(admission.createToken({ ttlSeconds: 31 * 86400 }))).status, 400);
  });

  test('the key ring trusts exactly the admitted keys', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const b64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const { nodeId } = await admission.join(joinBody((await admission.createToken()).token, b64, { name: 'signer' }));
    const ring = new AdmittedKeys(state);
    assert.ok(ring.publicKey(nodeId)?.equals(publicKey));
    assert.equal(ring.publicKey('node_unknown'), null);
    assert.ok(privateKey);
    state.nodes.delete(nodeId);
    assert.equal(ring.publicKey(nodeId), null, 'a forgotten node is no longer trusted');
  });

  test("controllers' keys are read from the store, and an unknown controller id reads them again (not too often)", async () => {
    let now = 0;
    const ring = new ControllerKeys(store, () => now);
    const { publicKey } = generateKeyPairSync('ed25519');
    const b64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    await store.saveControllerKey('ctl_one', b64, new Date().toISOString());
    await ring.refresh();
    assert.ok(ring.publicKey('ctl_one')?.equals(publicKey));
    const later = generateKeyPairSync('ed25519').publicKey;
    await store.saveControllerKey('ctl_two', later.export({ type: 'spki', format: 'der' }).toString('base64'), new Date().toISOString());
    assert.equal(ring.publicKey('ctl_two'), null, 'refreshed a moment ago: not read again yet');
    now += 5_000;
    assert.equal(ring.publicKey('ctl_two'), null, 'the read it starts answers later messages');
    await eventually(() => ring.publicKey('ctl_two')?.equals(later));
    assert.equal(ring.publicKey('node_x'), null);
  });

  test('over HTTP: tokens need an admin, a join needs none, and failed joins are refused past the limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enjin-join-api-'));
    const bus = new MemoryBus();
    const c = await Controller.start({ store, bus, dataDir: dir, domain: 'localhost', natsForNodes: NATS });
    const app = await buildApi(c);
    try {
      const admin = await c.auth.create('test');
      assert.equal((await app.inject({ method: 'POST', url: '/v1/nodes/tokens', payload: {} })).statusCode, 401);
      const made = await app.inject({ method: 'POST', url: '/v1/nodes/tokens', headers: { authorization: `Bearer ${admin}` }, payload: { ttlSeconds: 600 } });
      assert.equal(made.statusCode, 201, made.body);
      const { token } = made.json() as { token: string };
      const ok = await app.inject({ method: 'POST', url: '/v1/join', payload: joinBody(token, ed25519(), { name: 'via-http' }) });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.deepEqual(ok.json().nats, NATS);
      const badTtl = await app.inject({ method: 'POST', url: '/v1/nodes/tokens', headers: { authorization: `Bearer ${admin}` }, payload: { ttlSeconds: 'soon' } });
      assert.equal(badTtl.statusCode, 400);
      const codes: number[] = [];
      for (let k = 0; k < 11; k++) {
        codes.push((await app.inject({ method: 'POST', url: '/v1/join', remoteAddress: '10.9.9.9', payload: joinBody(token, ed25519()) })).statusCode);
      }
      assert.deepEqual(codes, [...Array(10).fill(401), 429]);
      const limited = await app.inject({ method: 'POST', url: '/v1/join', remoteAddress: '10.9.9.9', payload: {} });
      assert.equal(limited.json().error.code, 'join_rate_limited');
      // Another address is not held back by that one.
      assert.equal((await app.inject({ method: 'POST', url: '/v1/join', remoteAddress: '10.9.9.10', payload: {} })).statusCode, 400);
    } finally {
      await app.close();
      await c.stop();
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a follower refuses a join before spending the token and names the leader; the client joins there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enjin-join-lead-'));
    const bus = new MemoryBus();
    const leader = await Controller.start({ store, bus, dataDir: dir, domain: 'localhost', natsForNodes: NATS });
    const leaderApp = await buildApi(leader);
    const followerApp = Fastify();
    try {
      await leaderApp.listen({ host: '127.0.0.1', port: 0 });
      const leaderUrl = `http://127.0.0.1:${(leaderApp.server.address() as { port: number }).port}`;
      let leading = false;
      const follower = new Admission({ store, state, nats: NATS, now: () => clock, leadership: () => ({ leading, leader: { id: 'ctl_leader', apiUrl: leaderUrl } }) });
      await followerApp.register(joinRoutes(follower));
      await followerApp.listen({ host: '127.0.0.1', port: 0 });
      const followerUrl = `http://127.0.0.1:${(followerApp.server.address() as { port: number }).port}`;
      const { token } = await leader.admission.createToken();
      const body = joinBody(token, ed25519(), { name: 'follows-leader' });
      const refused = await followerApp.inject({ method: 'POST', url: '/v1/join', payload: body });
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json().error.code, 'not_leader');
      assert.equal(refused.json().leader.apiUrl, leaderUrl);
      // The token is still unspent: the client, sent to the follower, ends at the leader with it.
      const joined = await joinCluster(followerUrl, body as never);
      assert.match(joined.nodeId, /^node_/);
      assert.ok(leader.state.nodes.get(joined.nodeId), 'admitted by the leader');
      leading = true;
      const spent = await followerApp.inject({ method: 'POST', url: '/v1/join', payload: body });
      // (a bare Fastify app: its default error shape)
      assert.equal(spent.statusCode, 401, `a leading controller admits (the token is spent now): ${spent.body}`);
      assert.match(spent.body, /already used/);
    } finally {
      await followerApp.close();
      await leaderApp.close();
      await leader.stop();
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the join endpoint refuses without a controller bus', async () => {
    const closed = new Admission({ store, state, nats: null });
    const err = await refusal(closed.join(joinBody('x', ed25519())));
    assert.equal(err.status, 409);
    assert.match(err.message, /without NATS/);
    assert.equal((await refusal(closed.createToken())).status, 409);
  });
});

test('failed joins from one address are refused past the limit until the window passes', () => {
  let now = 0;
  const limiter = new JoinFailureLimiter({ maxFailures: 3, windowMs: 60_000, now: () => now });
  for (let k = 0; k < 3; k++) {
    limiter.check('10.0.0.9');
    limiter.failed('10.0.0.9');
  }
  assert.throws(() => limiter.check('10.0.0.9'), (err: EnjinError) => err.code === 'join_rate_limited' && err.status === 429);
  limiter.check('10.0.0.10');
  now += 60_000;
  limiter.check('10.0.0.9');
});
