// The route table and the generated-name namespace: SERVICE.PROJECT.DOMAIN always reaches PROJECT.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance, Manifest, Project, Version } from '../../core/model.ts';
import { parseManifest } from '../../core/manifest.ts';
import { buildRouteTable, generatedNamespaceOwner } from './build.ts';

describe('generatedNamespaceOwner', () => {
  it('gives the project a name under PROJECT.DOMAIN belongs to, wildcards and deeper names included', () => {
    assert.equal(generatedNamespaceOwner('web.canary.localhost', 'localhost'), 'canary');
    assert.equal(generatedNamespaceOwner('*.canary.localhost', 'localhost'), 'canary');
    assert.equal(generatedNamespaceOwner('a.web.canary.localhost', 'localhost'), 'canary');
    assert.equal(generatedNamespaceOwner('WEB.Canary.Example.COM', 'example.com'), 'canary');
    for (const h of ['app.localhost', 'canary.localhost', 'localhost', 'web.canary.example.com', 'web.canarylocalhost']) {
      assert.equal(generatedNamespaceOwner(h, 'localhost'), null, h);
    }
  });
});

describe('buildRouteTable', () => {
  it("routes a generated name to its project even if an older manifest claimed it", () => {
    const at = '2026-01-01T00:00:00.000Z';
    const project = (id: string, name: string): Project => ({ id, workspaceId: 'ws', name, currentVersionId: `v-${id}`, routedVersionId: `v-${id}`, scale: {}, createdAt: at, updatedAt: at });
    const version = (p: Project, manifest: Manifest): Version => ({ id: `v-${p.id}`, projectId: p.id, number: 1, sha256: '0'.repeat(64), size: 1, manifest, createdAt: at });
    // Stored before claims were refused: the older project lists canary's generated name as its own.
    const thief = project('a', 'thief');
    const canary = project('b', 'canary');
    const versions = new Map([
      [`v-a`, version(thief, parseManifest('project: thief\nservices:\n  web:\n    command: x\n    hostnames: [web.canary.localhost, thief.localhost]\n'))],
      [`v-b`, version(canary, parseManifest('project: canary\nservices:\n  web:\n    command: x\n'))],
    ]);
    const table = buildRouteTable({ workspaces: new Map([['ws', { id: 'ws', name: 'default', createdAt: at }]]), projects: [thief, canary], versions, instancesOf: () => [], domain: 'localhost' });
    assert.equal(table.hosts['web.canary.localhost'], 'default/canary/web');
    assert.equal(table.hosts['thief.localhost'], 'default/thief/web');
    assert.equal(table.hosts['web.thief.localhost'], 'default/thief/web');
  });

  it('carries a service\'s timeouts to the router in milliseconds; one without leaves the defaults to it', () => {
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, timeouts: { header: 5, idle: 30 } }\n  api: { command: y, port: true }\n');
    const project: Project = { id: 'p1', workspaceId: 'w1', name: 'shop', currentVersionId: 'v1', routedVersionId: 'v1', scale: {}, createdAt: '', updatedAt: '' };
    const version: Version = { id: 'v1', projectId: 'p1', number: 1, sha256: '', size: 0, manifest, createdAt: '' };
    const table = buildRouteTable({
      workspaces: new Map([['w1', { id: 'w1', name: 'default', createdAt: '' }]]),
      projects: [project],
      versions: new Map([['v1', version]]),
      instancesOf: (): Instance[] => [],
      domain: 'localhost',
    });
    assert.deepEqual(table.services['default/shop/web'].timeouts, { connectMs: 5_000, headerMs: 5_000, idleMs: 30_000 });
    assert.equal(table.services['default/shop/api'].timeouts, undefined);
    assert.equal(table.hosts['web.shop.localhost'], 'default/shop/web');
  });
});
