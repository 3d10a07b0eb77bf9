// Tests for choosing a builder and assembling a package's manifest from enjin.yaml, a Procfile and a builder.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EnjinError, type ErrorDetail } from '../errors.ts';
import { manifestFrom } from '../package-manifest.ts';
import { detectBuilder, planBuild } from './detect.ts';

/** A package's root files, by name. */
function files(map: Record<string, string>, tooLarge: string[] = []): { read(p: string): string | null; has(p: string): boolean } {
  return { read: (p) => map[p] ?? null, has: (p) => p in map || tooLarge.includes(p) };
}

function problemsOf(fn: () => unknown): ErrorDetail[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EnjinError && err.code === 'manifest_invalid', `expected manifest_invalid, got ${String(err)}`);
    return err.details;
  }
  assert.fail('expected manifest_invalid');
}

describe('detecting a builder', () => {
  it('node: npm ci with package-lock.json, then npm run build, web = npm start', () => {
    const pkg = files({ 'package.json': JSON.stringify({ scripts: { build: 'tsc', start: 'node dist/server.js' } }), 'package-lock.json': '{}' });
    const found = detectBuilder(pkg);
    assert.deepEqual(found, { builder: 'node', reason: 'package.json found' });
    const plan = planBuild('node', found!.reason, pkg);
    assert.deepEqual(plan.steps, ['sh .enjin-build/node.sh npm-ci', 'npm run build']);
    assert.equal(plan.defaultWeb, 'npm start');
    assert.match(plan.record.reason, /package-lock\.json → npm ci/);
    assert.deepEqual(plan.record.paths, ['node_modules/.bin']);
  });

  it('node: a lockfile too large to read still chooses npm ci', () => {
    const plan = planBuild('node', 'x', files({ 'package.json': '{}', 'server.js': '' }, ['package-lock.json']));
    assert.deepEqual(plan.steps, ['sh .enjin-build/node.sh npm-ci']);
    assert.equal(plan.defaultWeb, 'npm start', 'server.js is what npm start runs without a start script');
  });

  it('node: yarn and pnpm lockfiles, npm install without one; no start script and no server.js means no default web', () => {
    assert.deepEqual(planBuild('node', 'x', files({ 'package.json': '{}', 'yarn.lock': '' })).steps, ['sh .enjin-build/node.sh yarn']);
    assert.deepEqual(planBuild('node', 'x', files({ 'package.json': '{}', 'pnpm-lock.yaml': '' })).steps, ['sh .enjin-build/node.sh pnpm']);
    const plain = planBuild('node', 'x', files({ 'package.json': '{"scripts":{}}' }));
    assert.deepEqual(plain.steps, ['sh .enjin-build/node.sh npm-install']);
    assert.equal(plain.defaultWeb, null);
    assert.match(plain.noDefaultWeb!, /no "start" script/);
  });

  it('python: a virtualenv on PATH and in VIRTUAL_ENV; Django gets collectstatic', () => {
    const pkg = files({ 'requirements.txt': 'flask\n', 'manage.py': '' });
    const found = detectBuilder(pkg)!;
    assert.equal(found.builder, 'python');
    const plan = planBuild('python', found.reason, pkg);
    assert.deepEqual(plan.steps, ['sh .enjin-build/python.sh requirements', 'sh .enjin-build/collectstatic.sh']);
    assert.deepEqual(plan.record.paths, ['.venv/bin']);
    assert.deepEqual(plan.record.pathEnv, { VIRTUAL_ENV: '.venv' });
    assert.equal(detectBuilder(files({ 'pyproject.toml': '' }))!.builder, 'python');
    assert.equal(detectBuilder(files({ Pipfile: '' }))!.builder, 'python');
  });

  it('static: index.html alone; nothing known: no builder', () => {
    assert.equal(detectBuilder(files({ 'index.html': '<h1>hi</h1>' }))!.builder, 'static');
    assert.equal(detectBuilder(files({ 'index.html': '', 'package.json': '{}' }))!.builder, 'node');
    assert.equal(detectBuilder(files({ 'README.md': '' })), null);
    assert.equal(detectBuilder(files({ 'index.html': '', Procfile: 'web: python3 -m http.server $PORT' })), null, 'a Procfile serves the site itself');
  });
});

describe('assembling a package manifest', () => {
  it('package.json alone deploys with npm start as web, recording the builder', () => {
    const { manifest } = manifestFrom(files({ 'package.json': '{"scripts":{"start":"node s.js"}}', 'package-lock.json': '{}' }), 'shop');
    assert.equal(manifest.project, 'shop');
    assert.equal(manifest.services.web.command, 'npm start');
    assert.equal(manifest.services.web.listens, true);
    assert.equal(manifest.processesFrom, 'builder');
    assert.equal(manifest.build?.builder, 'node');
    assert.deepEqual(manifest.prepare, ['sh .enjin-build/node.sh npm-ci']);
  });

  it('package.json without a way to start says so', () => {
    assert.throws(() => manifestFrom(files({ 'package.json': '{}' }), 'shop'), (e: EnjinError) => e.code === 'manifest_missing' && /no "start" script/.test(e.message));
  });

  it('enjin.yaml adds to a Procfile: processes from the Procfile, the rest from enjin.yaml', () => {
    const yaml = 'project: shop\nenv: { A: "1" }\nservices:\n  web:\n    hostnames: [shop.example.com]\n    instances: 2\n  worker:\n    env: { B: "2" }\n';
    const { manifest, file } = manifestFrom(files({ 'enjin.yaml': yaml, Procfile: 'web: gunicorn app:app\nworker: python worker.py\nclock: python clock.py\n', 'requirements.txt': '' }), 'ignored');
    assert.equal(file, 'enjin.yaml');
    assert.equal(manifest.project, 'shop');
    assert.deepEqual(manifest.env, { A: '1' });
    assert.equal(manifest.services.web.command, 'gunicorn app:app');
    assert.deepEqual(manifest.services.web.hostnames, ['shop.example.com']);
    assert.equal(manifest.services.web.instances, 2);
    assert.deepEqual(manifest.services.worker.env, { B: '2' });
    assert.equal(manifest.services.worker.command, 'python worker.py');
    assert.equal(manifest.services.clock.command, 'python clock.py');
    assert.equal(manifest.processesFrom, 'Procfile');
    assert.equal(manifest.build?.builder, 'python');
  });

  it('a command for a Procfile process, or a service in neither, is pointed at by line and column', () => {
    const yaml = 'services:\n  web:\n    command: node x.js\n  extra:\n    instances: 1\n';
    const details = problemsOf(() => manifestFrom(files({ 'enjin.yaml': yaml, Procfile: 'web: node server.js\n' }), 'shop'));
    assert.deepEqual(details.map((d) => `${d.line}:${d.column} ${d.path}`), ['3:5 services.web.command', '4:3 services.extra']);
    assert.match(details[0].message, /Procfile, which gives its command/);
    assert.match(details[1].message, /not in the Procfile/);
  });

  it('Procfile problems keep their line and column with an enjin.yaml beside it', () => {
    const details = problemsOf(() => manifestFrom(files({ 'enjin.yaml': 'project: shop\n', Procfile: 'web: ok\n  bad_name: x\n' }), 'shop'));
    assert.equal(details[0].file, 'Procfile');
    assert.deepEqual([details[0].line, details[0].column], [2, 3]);
  });

  it('build: names a builder, adds steps, or turns detection off; prepare replaces detection', () => {
    const node = manifestFrom(files({ 'enjin.yaml': 'build: { builder: static, steps: [echo done] }\n', 'index.html': '' }), 'site').manifest;
    assert.equal(node.build?.builder, 'static');
    assert.match(node.build!.reason, /named in enjin.yaml/);
    assert.deepEqual(node.prepare, ['echo done']);
    assert.equal(node.services.web.command, 'node .enjin-build/static-server.cjs');
    const off = manifestFrom(files({ 'enjin.yaml': 'build: none\nservices: { web: { command: node s.js } }\n', 'package.json': '{}' }), 'x').manifest;
    assert.equal(off.build, undefined);
    assert.deepEqual(off.prepare, []);
    const explicit = manifestFrom(files({ 'enjin.yaml': 'prepare: make\nservices: { web: { command: ./s } }\n', 'package.json': '{}' }), 'x').manifest;
    assert.equal(explicit.build, undefined);
    assert.deepEqual(explicit.prepare, ['make']);
    const both = problemsOf(() => manifestFrom(files({ 'enjin.yaml': 'prepare: make\nbuild: node\nservices: { web: { command: ./s } }\n' }), 'x'));
    assert.deepEqual([both[0].line, both[0].column, both[0].path], [2, 1, 'build']);
    const bad = problemsOf(() => manifestFrom(files({ 'enjin.yaml': 'build: ruby\nservices: { web: { command: ./s } }\n' }), 'x'));
    assert.match(bad[0].message, /must name a builder \(node, python, static, none\)/);
  });

  it('enjin.yaml without services takes web from the builder; web without a command too', () => {
    const m = manifestFrom(files({ 'enjin.yaml': 'project: site\nservices:\n  web:\n    hostnames: [site.example.com]\n', 'index.html': '' }), 'site').manifest;
    assert.equal(m.services.web.command, 'node .enjin-build/static-server.cjs');
    assert.deepEqual(m.services.web.hostnames, ['site.example.com']);
    assert.equal(m.processesFrom, undefined, 'enjin.yaml lists the services');
  });

  it('nothing to run and nothing to build is manifest_missing', () => {
    assert.throws(() => manifestFrom(files({ 'README.md': '' }), 'x'), (e: EnjinError) => e.code === 'manifest_missing');
  });
});
