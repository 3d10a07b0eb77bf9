import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type RequestListener, type Server } from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessDriver } from './drivers/process.ts';
import { PROBE_OUTPUT_CAP, runProbe, type ProbeTarget } from './probe-runner.ts';

const driver = new ProcessDriver();
const dir = mkdtempSync(join(tmpdir(), 'enjin-probe-'));
let n = 0;
const target = (port: number | null, env: Record<string, string> = {}): ProbeTarget => ({
  host: '127.0.0.1', port, cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, commandId: `probe-test-${process.pid}-${++n}`,
});

async function serve(handler: RequestListener): Promise<{ server: Server; port: number }> {
  const server = createServer(handler).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('http probe: 2xx/3xx healthy, other statuses not, with the expected body text and the Host header sent', async () => {
  const seen: string[] = [];
  const { server, port } = await serve((req, res) => {
    seen.push(req.headers.host ?? '');
    if (req.url === '/healthz') res.end('all ok here');
    else if (req.url === '/moved') res.writeHead(302, { location: '/healthz' }).end();
    else res.writeHead(503).end('down');
  });
  try {
    const ok = await runProbe({ http: '/healthz', expect: 'ok here', host: 'shop.example' }, target(port), 5000, driver);
    assert.equal(ok.ok, true, ok.output);
    assert.equal(seen.at(-1), 'shop.example');
    assert.equal((await runProbe({ http: '/moved' }, target(port), 5000, driver)).ok, true, '3xx is healthy');
    const bad = await runProbe({ http: '/other' }, target(port), 5000, driver);
    assert.equal(bad.ok, false);
    assert.match(bad.output, /HTTP 503 from \/other/);
    const wrongBody = await runProbe({ http: '/healthz', expect: 'ready' }, target(port), 5000, driver);
    assert.equal(wrongBody.ok, false);
    assert.match(wrongBody.output, /does not contain "ready"/);
  } finally {
    server.close();
  }
});

test('http probe: a server that never answers fails within the timeout; a closed port is refused', async () => {
  const { server, port } = await serve(() => { /* never answers */ });
  try {
    const hung = await runProbe({ http: '/healthz' }, target(port), 300, driver);
    assert.equal(hung.ok, false);
    assert.match(hung.output, /no answer within/);
  } finally {
    server.closeAllConnections();
    server.close();
  }
  await once(server, 'close');
  const refused = await runProbe({ http: '/healthz' }, target(port), 5000, driver);
  assert.equal(refused.ok, false);
  assert.match(refused.output, /connection refused/);
});

test('tcp probe: healthy while something accepts, refused once it stops', async () => {
  const server = net.createServer((s) => s.destroy()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  assert.equal((await runProbe({ tcp: true }, target(port), 5000, driver)).ok, true);
  server.close();
  await once(server, 'close');
  const r = await runProbe({ tcp: true }, target(port), 5000, driver);
  assert.equal(r.ok, false);
  assert.match(r.output, /connection refused/);
});

test('command probe: runs in the instance directory with its environment; exit 0 healthy; output captured and capped', async () => {
  writeFileSync(join(dir, 'marker'), 'here');
  const ok = await runProbe({ command: 'cat marker; echo " $GREETING"' }, target(null, { GREETING: 'hello' }), 10_000, driver);
  assert.equal(ok.ok, true, ok.output);
  assert.equal(ok.output, 'here hello');
  const bad = await runProbe({ command: 'echo broken >&2; exit 4' }, target(null), 10_000, driver);
  assert.equal(bad.ok, false);
  assert.match(bad.output, /exited with code 4: broken/);
  const loud = await runProbe({ command: `head -c 100000 /dev/zero | tr '\\0' x; echo END; exit 1` }, target(null), 10_000, driver);
  assert.equal(loud.ok, false);
  assert.ok(loud.output.length <= PROBE_OUTPUT_CAP + 200, `capped (${loud.output.length})`);
  assert.match(loud.output, /END$/, 'the last output is kept');
});

test('command probe: a command that hangs is killed at the timeout, with everything it started', async () => {
  const pidFile = join(dir, 'hung.pid');
  const r = await runProbe({ command: `sleep 300 & echo $! > ${pidFile}; wait` }, target(null), 500, driver);
  assert.equal(r.ok, false);
  assert.match(r.output, /did not finish within 0.5 s/);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  const deadline = Date.now() + 10_000;
  let alive = true;
  while (alive && Date.now() < deadline) {
    try {
      process.kill(pid, 0);
      await new Promise((res) => setTimeout(res, 50));
    } catch {
      alive = false;
    }
  }
  assert.equal(alive, false, 'the probe left nothing running');
});
