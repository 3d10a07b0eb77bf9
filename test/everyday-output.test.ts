// The everyday output of the CLI against the real `enjin up`: URLs with the router's port and `enjin open`, a failed
// start explained once with the app's own output, an app that ignores $PORT told so, X-Request-Id through the router,
// a scale that does not reprint the prepare log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { EnjinProcess, cleanup, eventually, fixture, runCli, tempDir, viaRouter } from './support/enjin.ts';

const count = (text: string, s: string) => text.split(s).length - 1;

/** A directory with an enjin.yaml whose web service runs `server` (a start timeout short enough for a test). */
function app(dir: string, project: string, server: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'enjin.yaml'), `project: ${project}\nservices:\n  web:\n    command: node server.js\n    health: { start_timeout: 3 }\n`);
  writeFileSync(join(dir, 'server.js'), server);
  return dir;
}

describe('everyday output', () => {
  let enjin: EnjinProcess;
  let dataDir: string;
  let hello: string;
  let scratch: string;

  before(async () => {
    dataDir = tempDir('output');
    scratch = tempDir('output-apps');
    hello = fixture('node-app');
    enjin = await EnjinProcess.start(dataDir);
    const r = await enjin.cli(['deploy', hello]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    cleanup(dataDir, hello, scratch);
  });

  test('URLs carry the router port; open prints the URL, --json gives {url}, and a browser gets it when one is set', async () => {
    const port = enjin.routerPort;
    assert.notEqual(port, 80);
    const json = await enjin.cli(['--json', 'open', '--project', 'hello']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(json.json, { url: `http://hello.localhost:${port}` });
    const url = new URL((json.json as { url: string }).url);
    assert.equal((await viaRouter(Number(url.port), url.hostname)).status, 200, 'the URL reaches the app');

    const projects = await enjin.cli(['--json', 'projects']);
    const web = (projects.json as { projects: Array<{ services: Array<{ name: string; urls: string[] }> }> }).projects[0].services.find((s) => s.name === 'web')!;
    assert.ok(web.urls.includes(`http://web.hello.localhost:${port}`), JSON.stringify(web.urls));
    assert.match((await enjin.cli(['projects'])).stdout, new RegExp(`http://hello\\.localhost:${port}`));

    // No display and no BROWSER: printed only.
    const plain = await runCli(['open', '--project', 'hello'], { dataDir, env: { DISPLAY: '', WAYLAND_DISPLAY: '', BROWSER: '' } });
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `http://hello.localhost:${port}\n`);
    // BROWSER set: it is run with the URL.
    const seen = join(scratch, 'browser-saw');
    const browser = join(scratch, 'browser.sh');
    writeFileSync(browser, `#!/bin/sh\necho "$1" > ${seen}\n`, { mode: 0o755 });
    const opened = await runCli(['open', 'web', '--project', 'hello'], { dataDir, env: { DISPLAY: '', BROWSER: browser } });
    assert.equal(opened.code, 0, opened.stderr);
    await eventually(() => existsSync(seen) && readFileSync(seen, 'utf8') === `http://hello.localhost:${port}\n`, 'the browser got the URL');

    const worker = await enjin.cli(['open', 'worker', '--project', 'hello']);
    assert.notEqual(worker.code, 0);
    assert.match(worker.stderr, /does not listen on a port/);
    const nope = await enjin.cli(['open', 'nope', '--project', 'hello']);
    assert.notEqual(nope.code, 0);
    assert.match(nope.stderr, /unknown_service.*no service nope/);
  });

  test('the router gives the app an X-Request-Id and returns it; a sane client id is kept', async () => {
    const server = `require('http').createServer((req, res) => res.end(String(req.headers['x-request-id']))).listen(Number(process.env.PORT), '127.0.0.1');\n`;
    const dir = app(join(scratch, 'echo-id'), 'echoid', server);
    const r = await enjin.cli(['deploy', dir]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const fresh = await viaRouter(enjin.routerPort, 'web.echoid.localhost');
    assert.equal(fresh.status, 200, fresh.body);
    assert.ok(fresh.body.length > 0 && fresh.body !== 'undefined');
    assert.equal(fresh.headers['x-request-id'], fresh.body, 'the client gets the id the app saw');
    const kept = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: enjin.routerPort, path: '/', headers: { host: 'web.echoid.localhost', 'x-request-id': 'trace-42' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(kept, 'trace-42');
  });

  test('a failed start says why once, with the app\'s own output; an app ignoring $PORT is told what it listens on', async () => {
    const crashing = app(join(scratch, 'crashy'), 'crashy', "console.log('booting');\nconsole.error('Error: Cannot find module express');\nprocess.exit(1);\n");
    const r = await enjin.cli(['deploy', crashing]);
    assert.notEqual(r.code, 0);
    const all = r.stdout + r.stderr;
    assert.equal(count(all, 'Cannot find module express'), 1, all);
    assert.equal(count(r.stderr, 'exited with code 1 before it was ready'), 1, r.stderr);
    assert.doesNotMatch(all, /\| failed: /, "the engine's own failed line is not repeated");

    const elsewhere = app(join(scratch, 'elsewhere'), 'elsewhere', "require('http').createServer().listen(0, '127.0.0.1', function () { console.log('listening on ' + this.address().port); });\n");
    const e = await enjin.cli(['deploy', elsewhere]);
    assert.notEqual(e.code, 0);
    const port = /listening on (\d+)/.exec(e.stdout + e.stderr)?.[1];
    assert.ok(port, e.stdout + e.stderr);
    assert.match(e.stderr, new RegExp(`does not listen on \\$PORT \\(\\d+\\); it listens on 127\\.0\\.0\\.1:${port} instead`));
  });

  test('a scale does not print the prepare log again', async () => {
    const r = await enjin.cli(['scale', 'web=3', '--project', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /prepared the app/);
    assert.match(r.stdout + r.stderr, /already prepared/);
  });
});
