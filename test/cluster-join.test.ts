// End to end, with the real binary: a controller on a private PostgreSQL and a private nats-server, a join token from
// `enjin nodes token`, an agent joining with it, `enjin nodes` showing it ready; the spent token refused to a second
// host; the agent restarted with the same --data and no token coming back as the same node.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres, type TestPostgres } from './support/postgres.ts';
import { startNats, type TestNats } from './support/nats.ts';
import { NatsBus } from '../src/bus/nats.ts';
import { SignedBus } from '../src/bus/signing.ts';
import { subjects, type NodeStateUpdate } from '../src/core/messages.ts';
import { cleanup, eventually, fixture, runCli, tempDir, viaRouter } from './support/enjin.ts';
import { startRole, stopRole, stopRoles } from './support/roles.ts';

let pg: TestPostgres;
let nats: TestNats;
const controllerDir = tempDir('join-ctl');
const agentDir = tempDir('join-agent');
const otherDir = tempDir('join-other');
const routerDir = tempDir('join-router');
let api = '';
let clusterAgent: { nodeId: string; routerPort: number } | null = null;

async function listed(): Promise<Array<Record<string, any>>> {
  const r = await runCli(['--json', 'nodes'], { dataDir: controllerDir });
  assert.equal(r.code, 0, r.stderr);
  return r.json.nodes as Array<Record<string, any>>;
}

before(async () => {
  [pg, nats] = await Promise.all([startPostgres(), startNats()]);
});

after(async () => {
  await stopRoles();
  await nats?.stop();
  await pg?.stop();
  cleanup(controllerDir, agentDir, otherDir, routerDir);
});

test('an agent joins with a token, shows up ready, and comes back as the same node without one', { timeout: 600_000 }, async () => {
  const controller = await startRole(['--data', controllerDir, 'controller', '--database-url', pg.url, '--nats', nats.url, '--api-port', '0']);
  api = controller.answer.api as string;
  assert.match(api, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(existsSync(join(controllerDir, 'credentials.json')));
  assert.equal(statSync(join(controllerDir, 'credentials.json')).mode & 0o777, 0o600);

  const made = await runCli(['--json', 'nodes', 'token', '--ttl', '10m'], { dataDir: controllerDir });
  assert.equal(made.code, 0, made.stderr);
  const token = made.json.token as string;
  assert.match(token, /^enjoin_/);
  assert.equal(made.json.reusable, false);

  // Not joined and no token: refused, saying what to pass.
  const lost = await runCli(['agent'], { dataDir: otherDir, timeoutMs: 120_000 });
  assert.notEqual(lost.code, 0);
  assert.match(lost.stderr, /pass --join API_URL --token TOKEN/);

  // No --advertise-host: the address is this host's on its route to the controller (loopback here).
  const agentArgs = ['--data', agentDir, 'agent', '--name', 'host-one', '--labels', 'zone=a,disk=ssd', '--compartment', 'dc1/rack-a', '--port-range', '31000-31099', '--router-port', '0', '--router-host', '127.0.0.1'];
  let agent = await startRole([...agentArgs, '--join', api, '--token', token]);
  const nodeId = agent.answer.nodeId as string;
  assert.match(nodeId, /^node_/);
  const membership = JSON.parse(readFileSync(join(agentDir, 'node.json'), 'utf8'));
  assert.equal(membership.nodeId, nodeId);
  assert.equal(statSync(join(agentDir, 'node.json')).mode & 0o777, 0o600);
  // The router beside the agent serves.
  assert.equal((await viaRouter(agent.answer.routerPort as number, 'nobody.example.test')).status, 404);

  const ready = await eventually(async () => (await listed()).find((n) => n.id === nodeId && n.state === 'ready'), `node ${nodeId} ready in \`enjin nodes\`\n${agent.output()}`, 120_000);
  assert.equal(ready.name, 'host-one');
  assert.deepEqual(ready.labels, { zone: 'a', disk: 'ssd' });
  assert.equal(ready.compartment, 'dc1/rack-a');
  assert.equal(ready.instances, 0);
  assert.equal(ready.capacity.ports, 100);
  assert.ok(ready.capacity.cpus >= 1);
  assert.equal(ready.address, '127.0.0.1');
  assert.deepEqual(ready.roles, ['agent', 'router']);

  // The token was single-use: a second host cannot spend it again, and says why.
  const second = await runCli(['agent', '--join', api, '--token', token, '--advertise-host', '127.0.0.1'], { dataDir: otherDir, timeoutMs: 120_000 });
  assert.notEqual(second.code, 0);
  assert.match(second.stderr, /already used/);
  assert.ok(!existsSync(join(otherDir, 'node.json')));

  // A restart with the same --data, no token, no name or labels: the same node, as it was, ready again.
  const seenBefore = ready.lastSeenAt as string;
  await stopRole(agent.child);
  // (--stop-instances-on-exit: the deploy below leaves nothing running when the test ends)
  agent = await startRole(['--data', agentDir, 'agent', '--port-range', '31000-31099', '--router-port', '0', '--router-host', '127.0.0.1', '--stop-instances-on-exit']);
  clusterAgent = { nodeId, routerPort: agent.answer.routerPort as number };
  assert.equal(agent.answer.nodeId, nodeId);
  const back = await eventually(async () => {
    const nodes = await listed();
    const me = nodes.find((n) => n.id === nodeId);
    return nodes.length === 1 && me?.state === 'ready' && Date.parse(me.lastSeenAt) > Date.parse(seenBefore) ? me : undefined;
  }, `node ${nodeId} back and reporting after its restart\n${agent.output()}`, 120_000);
  assert.equal(back.name, 'host-one');
  assert.deepEqual(back.labels, { zone: 'a', disk: 'ssd' });

  // The operator's verbs: drain, activate, and remove (refused for a ready node without --force).
  const drained = await runCli(['--json', 'nodes', 'drain', 'host-one'], { dataDir: controllerDir });
  assert.equal(drained.code, 0, drained.stderr);
  assert.equal((await listed()).find((n) => n.id === nodeId)?.state, 'draining');
  const activated = await runCli(['--json', 'nodes', 'activate', nodeId], { dataDir: controllerDir });
  assert.equal(activated.code, 0, activated.stderr);
  assert.equal((await listed()).find((n) => n.id === nodeId)?.state, 'ready');
  const removal = await runCli(['--json', 'nodes', 'remove', nodeId], { dataDir: controllerDir });
  assert.notEqual(removal.code, 0);
  assert.ok(JSON.parse(removal.stderr).error.message, removal.stderr);
  assert.ok((await listed()).some((n) => n.id === nodeId), 'still there');
});

test('an app deployed to the cluster runs on the joined node and is served through its router', { timeout: 600_000 }, async () => {
  assert.ok(clusterAgent, 'the agent of the first test runs');
  const app = fixture('node-app');
  try {
    const deployed = await runCli(['deploy', app], { dataDir: controllerDir, timeoutMs: 300_000 });
    assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
    const res = await eventually(async () => {
      const r = await viaRouter(clusterAgent!.routerPort, 'hello.localhost');
      return r.status === 200 ? r : undefined;
    }, 'hello.localhost served through the node\'s router', 120_000);
    assert.match(res.body, /^hi from web v1/);
    const ps = await runCli(['--json', 'ps'], { dataDir: controllerDir });
    assert.equal(ps.code, 0, ps.stderr);
    assert.ok((ps.json.instances as Array<{ node: string }>).every((i) => i.node === clusterAgent!.nodeId), JSON.stringify(ps.json));
  } finally {
    const destroyed = await runCli(['destroy', 'hello'], { dataDir: controllerDir, timeoutMs: 300_000 });
    assert.equal(destroyed.code, 0, destroyed.stderr + destroyed.stdout);
    cleanup(app);
  }
});

test('a router joins with a reusable token, routes, and shows up ready as a router', { timeout: 600_000 }, async () => {
  assert.ok(api, 'the controller of the first test runs');
  const made = await runCli(['--json', 'nodes', 'token', '--reusable', '--ttl', '5m'], { dataDir: controllerDir });
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.json.reusable, true);
  const router = await startRole(['--data', routerDir, 'router', '--join', api, '--token', made.json.token, '--name', 'edge-one', '--port', '0', '--host', '127.0.0.1', '--advertise-host', '127.0.0.1']);
  const nodeId = router.answer.nodeId as string;
  const me = await eventually(async () => (await listed()).find((n) => n.id === nodeId && n.state === 'ready'), `router ${nodeId} ready\n${router.output()}`, 120_000);
  assert.deepEqual(me.roles, ['router']);
  assert.equal(me.name, 'edge-one');
  // It serves: a host nobody deployed is answered by the router itself.
  const res = await viaRouter(router.answer.port as number, 'nobody.example.test');
  assert.equal(res.status, 404);
  // The reusable token is still good for another host (the join route takes no bearer token: the join token is it).
  const publicKey = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const res2 = await fetch(`${api}/v1/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: made.json.token, publicKey, name: 'edge-two', roles: ['router'], labels: {}, address: '127.0.0.1' }) });
  assert.equal(res2.status, 200, await res2.clone().text());
  const joined = await res2.json() as { nodeId: string; nats: { url: string } };
  assert.notEqual(joined.nodeId, nodeId);
  assert.equal(joined.nats.url, nats.url);
});

test('a second controller on the same store writes its own working credentials and sees the same nodes', { timeout: 600_000 }, async () => {
  assert.ok(api, 'the controller of the first test runs');
  const secondDir = tempDir('join-ctl2');
  try {
    const second = await startRole(['--data', secondDir, 'controller', '--database-url', pg.url, '--nats', nats.url, '--api-port', '0']);
    assert.notEqual(second.answer.api, api);
    assert.notEqual(second.answer.id, undefined);
    const r = await runCli(['--json', 'nodes'], { dataDir: secondDir });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((r.json.nodes as Array<{ name: string }>).some((n) => n.name === 'host-one'), JSON.stringify(r.json));
    const mine = JSON.parse(readFileSync(join(secondDir, 'credentials.json'), 'utf8'));
    const first = JSON.parse(readFileSync(join(controllerDir, 'credentials.json'), 'utf8'));
    assert.notEqual(mine.token, first.token);
    await stopRole(second.child);
    // Restarted on the same data: the token the store still knows is kept.
    const again = await startRole(['--data', secondDir, 'controller', '--database-url', pg.url, '--nats', nats.url, '--api-port', '0']);
    assert.equal(JSON.parse(readFileSync(join(secondDir, 'credentials.json'), 'utf8')).token, mine.token);
    await stopRole(again.child);
  } finally {
    cleanup(secondDir);
  }
});

test('the controller hears only admitted keys: a node that never joined is not listed, one that joined is', { timeout: 600_000 }, async () => {
  assert.ok(api, 'the controller of the first test runs');
  const made = await runCli(['--json', 'nodes', 'token'], { dataDir: controllerDir });
  assert.equal(made.code, 0, made.stderr);
  const admittedKey = generateKeyPairSync('ed25519');
  const joinRes = await fetch(`${api}/v1/join`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: made.json.token, publicKey: admittedKey.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), name: 'signed-one', roles: ['agent'], labels: {}, address: '127.0.0.1' }),
  });
  assert.equal(joinRes.status, 200);
  const { nodeId } = await joinRes.json() as { nodeId: string };
  const nodeState = (id: string, name: string): NodeStateUpdate => ({ node: { nodeId: id, name, address: '127.0.0.1', labels: {} }, incarnation: `inc-${id}`, seq: 0, instances: [], removed: [] });

  // Both over one connection, the stranger first: NATS keeps their order, so once the admitted one is listed the
  // stranger's update has been dealt with too.
  const inner = await NatsBus.connect({ url: nats.url, name: 'test impostor' });
  const stranger = new SignedBus(inner, { identity: { id: 'node_stranger', privateKey: generateKeyPairSync('ed25519').privateKey }, ownsInner: false });
  const member = new SignedBus(inner, { identity: { id: nodeId, privateKey: admittedKey.privateKey }, ownsInner: false });
  try {
    stranger.publish(subjects.nodeState('node_stranger'), nodeState('node_stranger', 'stranger'));
    member.publish(subjects.nodeState(nodeId), nodeState(nodeId, 'signed-one'));
    const nodes = await eventually(async () => {
      const list = await listed();
      return list.find((n) => n.id === nodeId && n.state === 'ready') ? list : undefined;
    }, `the admitted node ${nodeId} is ready`, 60_000);
    assert.equal(nodes.find((n) => n.id === 'node_stranger' || n.name === 'stranger'), undefined);
  } finally {
    await stranger.close();
    await member.close();
    await inner.close();
  }
});
