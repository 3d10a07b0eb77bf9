// Unit test of the route table build: a service's manifest timeouts reach the router in milliseconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifest } from '../../core/manifest.ts';
import type { Instance, Project, Version } from '../../core/model.ts';
import { buildRouteTable } from './build.ts';

test('a service with timeouts carries them to the router in milliseconds; one without leaves the defaults to it', () => {
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
