import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsBus, redactUrl } from './nats.ts';
import { SignedBus } from './signing.ts';
import { loadOrCreateIdentity, StaticKeyRing } from './identity.ts';
import { busConformance } from './conformance.ts';
import { EnjinError } from '../core/errors.ts';
import type { BusStatus } from './bus.ts';
import { startNats, type TestNats } from '../../test/support/nats.ts';

let nats: TestNats;
before(async () => {
  nats = await startNats();
});
after(async () => {
  await nats?.stop();
});

const outage = () => ({ stop: () => nats.stop(), start: () => nats.restart() });

// Two clients of one private nats-server: everything crosses real TCP connections.
busConformance('NatsBus', async () => {
  const bus = await NatsBus.connect({ url: nats.url, name: 'conformance-bus' });
  const peer = await NatsBus.connect({ url: nats.url, name: 'conformance-peer' });
  return {
    bus,
    peer,
    outage: outage(),
    close: async () => {
      await bus.close();
      await peer.close();
    },
  };
});

// The wrapper as it runs in a cluster: signed envelopes over NATS, each side verifying the other.
busConformance('SignedBus over NatsBus', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-signed-nats-'));
  const a = await loadOrCreateIdentity(join(dir, 'a'));
  const b = await loadOrCreateIdentity(join(dir, 'b'));
  const keyring = new StaticKeyRing([[a.id, a.publicKey], [b.id, b.publicKey]]);
  const bus = new SignedBus(await NatsBus.connect({ url: nats.url }), { identity: a, keyring });
  const peer = new SignedBus(await NatsBus.connect({ url: nats.url }), { identity: b, keyring });
  return {
    bus,
    peer,
    senders: { bus: a.id, peer: b.id },
    outage: outage(),
    close: async () => {
      await bus.close();
      await peer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('NatsBus: with no server there, connect fails within its bound with bus_unavailable, naming the URL without its password', async () => {
  const stopped = await startNats();
  const url = stopped.url.replace('nats://', 'nats://enjin:s3cret@');
  await stopped.stop();
  const started = Date.now();
  await assert.rejects(NatsBus.connect({ url, connectTimeoutMs: 1_500 }), (e: EnjinError) => {
    assert.ok(e instanceof EnjinError);
    assert.equal(e.code, 'bus_unavailable');
    assert.equal(e.status, 503);
    assert.match(e.message, new RegExp(`nats://enjin:\\*\\*\\*@127\\.0\\.0\\.1:${stopped.port}`));
    assert.doesNotMatch(e.message, /s3cret/);
    assert.match(e.message, /nats-server/);
    return true;
  });
  assert.ok(Date.now() - started < 15_000, 'gave up in bounded time');
});

test('NatsBus: user and password come from the URL; wrong ones are refused at once, clearly', async () => {
  const secured = await startNats({ user: 'enjin', pass: 'p@ss word' });
  try {
    assert.match(secured.url, /^nats:\/\/enjin:p%40ss%20word@/);
    const bus = await NatsBus.connect({ url: secured.url });
    try {
      bus.handle('auth.ok', async () => 'in');
      assert.equal(await bus.request('auth.ok', null), 'in');
    } finally {
      await bus.close();
    }
    const wrong = secured.url.replace('p%40ss%20word', 'nope');
    const started = Date.now();
    await assert.rejects(NatsBus.connect({ url: wrong, connectTimeoutMs: 20_000 }), (e: EnjinError) => e.code === 'bus_unavailable' && !/nope/.test(e.message) && /\*\*\*/.test(e.message));
    assert.ok(Date.now() - started < 15_000, 'an authorization failure is not retried until the deadline');
  } finally {
    await secured.stop();
  }
});

test('NatsBus: a TLS server is reached with the CA passed through, and refused without it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'enjin-nats-tls-'));
  try {
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=enjin-test', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const secure = await startNats({ tls: { certFile, keyFile } });
    try {
      const bus = await NatsBus.connect({ url: secure.url, tlsCaFile: certFile });
      try {
        bus.handle('tls.ok', async () => 'encrypted');
        assert.equal(await bus.request('tls.ok', null), 'encrypted');
      } finally {
        await bus.close();
      }
      // Without the CA the self-signed certificate is not trusted: a clear error, at once.
      await assert.rejects(NatsBus.connect({ url: secure.url, connectTimeoutMs: 20_000 }), (e: EnjinError) => e.code === 'bus_unavailable' && /tls-ca/.test(e.message));
    } finally {
      await secure.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('NatsBus: a creds file that cannot be read is a configuration error', async () => {
  await assert.rejects(NatsBus.connect({ url: nats.url, credsFile: '/nonexistent/enjin.creds' }), (e: EnjinError) => e.code === 'invalid_config' && /enjin\.creds/.test(e.message));
});

test('NatsBus: a responder ignores plain publishes on its subject, and a request is answered by one responder only', async () => {
  const a = await NatsBus.connect({ url: nats.url });
  const b = await NatsBus.connect({ url: nats.url });
  try {
    let calls = 0;
    a.handle('only.requests', async (d) => (calls++, d));
    const seen = new Promise((resolve) => a.subscribe('only.sync', resolve));
    const timer = setInterval(() => b.publish('only.sync', null), 50);
    await seen;
    clearInterval(timer);
    b.publish('only.requests', 'not a request');
    assert.equal(await b.request('only.requests', 'asked'), 'asked');
    assert.equal(calls, 1, 'the plain publish before the request was not answered');
  } finally {
    await a.close();
    await b.close();
  }
});

test('NatsBus: stop the server, onStatus says disconnected; restart it, reconnected; the same bus publishes and subscribes again', async () => {
  const bus = await NatsBus.connect({ url: nats.url });
  const other = await NatsBus.connect({ url: nats.url });
  try {
    const events: BusStatus[] = [];
    bus.onStatus((s) => events.push(s));
    const waitFor = async (status: BusStatus) => {
      const deadline = Date.now() + 60_000;
      while (!events.includes(status)) {
        if (Date.now() > deadline) throw new Error(`no ${status} event within 60 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await nats.stop();
    await waitFor('disconnected');
    await assert.rejects(bus.request('anything', null, { timeoutMs: 300 }), (e: EnjinError) => e.code === 'bus_timeout' || e.code === 'bus_unavailable');
    await nats.restart();
    await waitFor('reconnected');
    assert.deepEqual(events, ['disconnected', 'reconnected']);
    // A subscription made after the outage, on the same bus object, and a publish from another client.
    const got = new Promise((resolve) => bus.subscribe('after.outage', (m) => resolve(m.data)));
    const timer = setInterval(() => other.publish('after.outage', { back: true }), 100);
    try {
      assert.deepEqual(await got, { back: true });
    } finally {
      clearInterval(timer);
    }
  } finally {
    await bus.close();
    await other.close();
  }
});

test('NatsBus: a request over the server max_payload fails with a message saying so, and the bus keeps working', async () => {
  const bus = await NatsBus.connect({ url: nats.url });
  try {
    bus.handle('big', async (d) => (d as string).length);
    const huge = 'x'.repeat(2 * 1024 * 1024);
    await assert.rejects(bus.request('big', huge), (e: EnjinError) => e.code === 'internal' && /max_payload/.test(e.message));
    bus.publish('big.publish', huge);
    assert.equal(await bus.request('big', 'small'), 5);
    bus.handle('big.answer', async () => huge);
    await assert.rejects(bus.request('big.answer', null), (e: EnjinError) => e.code === 'internal' && /answer on big\.answer is \d+ bytes, over the NATS server's max_payload/.test(e.message));
  } finally {
    await bus.close();
  }
});

test('redactUrl hides passwords only', () => {
  assert.equal(redactUrl('nats://u:p@h:4222'), 'nats://u:***@h:4222');
  assert.equal(redactUrl('nats://h:4222,tls://a:b@g:1'), 'nats://h:4222,tls://a:***@g:1');
  assert.equal(redactUrl('nats://token@h:4222'), 'nats://token@h:4222');
});
