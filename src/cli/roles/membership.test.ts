// The node side of joining, without a controller: what a data directory that never joined says, a damaged node.json,
// resuming from node.json without spending a token, the address towards the controller, and the options' parsers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnjinError } from '../../core/errors.ts';
import { joinOrResume, localAddressTowards, NODE_FILE } from './membership.ts';
import { parseLabels, parsePortRange } from './options.ts';
import { parseDuration } from './durations.ts';

const base = { roles: ['agent' as const] };

test('a data directory that never joined asks for --join and --token; a damaged node.json says how to recover', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-membership-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(joinOrResume({ ...base, dataDir: dir }), (err: EnjinError) => err.code === 'not_joined' && /--join API_URL --token TOKEN/.test(err.message));
  writeFileSync(join(dir, NODE_FILE), '{ not json');
  await assert.rejects(joinOrResume({ ...base, dataDir: dir }), (err: EnjinError) => err.code === 'invalid_config' && /delete it and join again/.test(err.message));
  writeFileSync(join(dir, NODE_FILE), '{}');
  await assert.rejects(joinOrResume({ ...base, dataDir: dir }), (err: EnjinError) => err.code === 'invalid_config' && /lacks nodeId/.test(err.message));
});

test('a node that joined resumes from node.json: no join, the token unused, new name and labels kept for next time', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-membership-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stored = { nodeId: 'node_abc', api: 'http://192.0.2.1:1', name: 'old', labels: { zone: 'a' }, roles: ['agent'], address: '10.0.0.5', nats: { url: 'nats://192.0.2.1:4222' }, joinedAt: '2026-01-01T00:00:00.000Z' };
  writeFileSync(join(dir, NODE_FILE), JSON.stringify(stored));
  const said: string[] = [];
  // The API is unreachable (TEST-NET): resuming must not try it.
  const first = await joinOrResume({ ...base, dataDir: dir, token: 'enjoin_x', join: 'http://192.0.2.1:1', say: (l) => said.push(l) });
  assert.equal(first.joined, false);
  assert.equal(first.membership.nodeId, 'node_abc');
  assert.deepEqual(first.membership.labels, { zone: 'a' });
  assert.equal(first.membership.name, 'old');
  assert.equal(first.membership.compartment, null, 'a node.json from before compartments were kept');
  assert.match(said.join('\n'), /the token is not used/);
  const renamed = await joinOrResume({ ...base, dataDir: dir, name: 'new', labels: { zone: 'b' } });
  assert.equal(renamed.membership.name, 'new');
  const file = JSON.parse(readFileSync(join(dir, NODE_FILE), 'utf8'));
  assert.equal(file.name, 'new');
  assert.deepEqual(file.labels, { zone: 'b' });
  const placed = await joinOrResume({ ...base, dataDir: dir, compartment: 'eu-west' });
  assert.equal(placed.membership.compartment, 'eu-west');
  assert.equal((await joinOrResume({ ...base, dataDir: dir })).membership.compartment, 'eu-west', 'kept when started without --compartment');
  assert.equal(renamed.identity.id, first.identity.id, 'the same key');
});

test("the address towards the controller is this host's on that route; an unreachable one is named", async (t) => {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as { port: number }).port;
  assert.equal(await localAddressTowards(`http://127.0.0.1:${port}`), '127.0.0.1');
  server.close();
  await assert.rejects(localAddressTowards(`http://127.0.0.1:${port}`), (err: EnjinError) => err.code === 'controller_unreachable');
  await assert.rejects(localAddressTowards('not a url'), (err: EnjinError) => err.code === 'invalid_request');
});

test('labels, port ranges and durations parse, and nonsense is refused', () => {
  assert.deepEqual(parseLabels('zone=a, disk=ssd'), { zone: 'a', disk: 'ssd' });
  assert.deepEqual(parseLabels(undefined), {});
  assert.throws(() => parseLabels('zone'), { code: 'invalid_request' });
  assert.deepEqual(parsePortRange('31000-31099'), [31000, 31099]);
  assert.throws(() => parsePortRange('9-1'), { code: 'invalid_request' });
  assert.equal(parseDuration('--ttl', '1h'), 3_600_000);
  assert.equal(parseDuration('--ttl', '90'), 90_000);
  assert.equal(parseDuration('--ttl', '250ms'), 250);
  assert.throws(() => parseDuration('--ttl', 'soon'), { code: 'invalid_request' });
});
