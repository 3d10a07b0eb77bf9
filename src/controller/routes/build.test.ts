// The route table and the generated-name namespace: SERVICE.PROJECT.DOMAIN always reaches PROJECT.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Instance, InstanceHealth, InstanceState, Manifest, Node, Project, Version } from '../../core/model.ts';
import { parseManifest } from '../../core/manifest.ts';
import { parseProcfile } from '../../core/procfile.ts';
import { buildRouteTable, generatedNamespaceOwner, type RouteInput } from './build.ts';

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
    const table = buildRouteTable({ workspaces: new Map([['ws', { id: 'ws', name: 'default', createdAt: at }]]), projects: [thief, canary], versions, instancesOf: () => [], nodes: new Map(), domain: 'localhost' });
    assert.equal(table.hosts['web.canary.localhost'], 'default/canary/web');
    assert.equal(table.hosts['thief.localhost'], 'default/thief/web');
    assert.equal(table.hosts['web.thief.localhost'], 'default/thief/web');
  });

  it('a Procfile project\'s web answers on PROJECT.DOMAIN too, unless a manifest claimed that name; an enjin.yaml project\'s does not', () => {
    const at = '2026-01-01T00:00:00.000Z';
    const project = (id: string, name: string): Project => ({ id, workspaceId: 'ws', name, currentVersionId: `v-${id}`, routedVersionId: `v-${id}`, scale: {}, createdAt: at, updatedAt: at });
    const version = (p: Project, manifest: Manifest): Version => ({ id: `v-${p.id}`, projectId: p.id, number: 1, sha256: '0'.repeat(64), size: 1, manifest, createdAt: at });
    const procs = project('a', 'procs');
    const taken = project('b', 'taken');
    const yaml = project('c', 'yaml');
    const claimer = project('d', 'claimer');
    const versions = new Map([
      ['v-a', version(procs, { ...parseProcfile('web: ./server\nworker: ./work\n', 'procs'), processesFrom: 'Procfile' })],
      ['v-b', version(taken, { ...parseProcfile('web: ./server\n', 'taken'), processesFrom: 'Procfile' })],
      ['v-c', version(yaml, parseManifest('project: yaml\nservices:\n  web:\n    command: x\n'))],
      ['v-d', version(claimer, parseManifest('project: claimer\nservices:\n  web:\n    command: x\n    hostnames: [taken.localhost]\n'))],
    ]);
    const table = buildRouteTable({ workspaces: new Map([['ws', { id: 'ws', name: 'default', createdAt: at }]]), projects: [procs, taken, yaml, claimer], versions, instancesOf: () => [], nodes: new Map(), domain: 'localhost' });
    assert.equal(table.hosts['procs.localhost'], 'default/procs/web');
    assert.equal(table.hosts['web.procs.localhost'], 'default/procs/web');
    assert.equal(table.hosts['taken.localhost'], 'default/claimer/web', 'a name a manifest routes is not taken from it');
    assert.equal(table.hosts['yaml.localhost'], undefined);
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
      nodes: new Map(),
      domain: 'localhost',
    });
    assert.deepEqual(table.services['default/shop/web'].timeouts, { connectMs: 5_000, headerMs: 5_000, idleMs: 30_000 });
    assert.equal(table.services['default/shop/api'].timeouts, undefined);
    assert.equal(table.hosts['web.shop.localhost'], 'default/shop/web');
  });

  it('routes only to instances reported running, with an address, on a node that is ready', () => {
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, instances: 6 }\n');
    const project: Project = { id: 'p1', workspaceId: 'w1', name: 'shop', currentVersionId: 'v1', routedVersionId: 'v1', scale: {}, createdAt: '', updatedAt: '' };
    const version: Version = { id: 'v1', projectId: 'p1', number: 1, sha256: '', size: 0, manifest, createdAt: '' };
    const node = (id: string, status: Node['status']): Node => ({ id, name: id, address: '10.0.0.1', labels: {}, status, draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: null, createdAt: '' });
    const nodes = new Map([['up', node('up', 'ready')], ['gone', node('gone', 'down')], ['leaving', { ...node('leaving', 'ready'), draining: true }]]);
    const inst = (id: string, nodeId: string, state: InstanceState, extra: Partial<Instance> = {}): Instance => ({
      id, workspaceId: 'w1', projectId: 'p1', service: 'web', versionId: 'v1', nodeId, desired: 'running', createdAt: '',
      current: { state, nodeId, pid: 1, host: '10.0.0.1', port: 5000, restarts: 0, lastExit: null, message: null, reportedAt: '' }, ...extra,
    });
    const instances = [
      inst('i1-serving', 'up', 'running'),
      inst('i2-on-down-node', 'gone', 'running'),
      inst('i3-starting', 'up', 'starting'),
      inst('i4-stopping', 'up', 'running', { desired: 'stopped' }),
      inst('i5-unknown-node', 'nowhere', 'running'),
      // A draining node's instances keep serving until their replacements are ready and they are stopped.
      inst('i6-on-draining-node', 'leaving', 'running'),
      inst('i7-not-reported', 'up', 'running', { current: null }),
    ];
    const table = buildRouteTable({
      workspaces: new Map([['w1', { id: 'w1', name: 'default', createdAt: '' }]]),
      projects: [project], versions: new Map([['v1', version]]), instancesOf: () => instances, nodes, domain: 'localhost',
    });
    assert.deepEqual(table.services['default/shop/web'].upstreams.map((u) => u.instanceId), ['i1-serving', 'i6-on-draining-node']);
    // The same instance comes back once its node is ready again.
    nodes.set('gone', node('gone', 'ready'));
    const again = buildRouteTable({
      workspaces: new Map([['w1', { id: 'w1', name: 'default', createdAt: '' }]]),
      projects: [project], versions: new Map([['v1', version]]), instancesOf: () => instances, nodes, domain: 'localhost',
    });
    assert.deepEqual(again.services['default/shop/web'].upstreams.map((u) => u.instanceId), ['i1-serving', 'i2-on-down-node', 'i6-on-draining-node']);
  });

  describe('versions, weights and readiness', () => {
    const manifest = parseManifest('project: shop\nservices:\n  web: { command: x, instances: 4 }\n  worker: { command: y, port: false }\n');
    const project: Project = { id: 'p1', workspaceId: 'w1', name: 'shop', currentVersionId: 'v2', routedVersionId: 'v1', scale: {}, createdAt: '', updatedAt: '' };
    const v1: Version = { id: 'v1', projectId: 'p1', number: 1, sha256: '', size: 0, manifest, createdAt: '' };
    const v2: Version = { ...v1, id: 'v2', number: 2 };
    const nodes = new Map([['n1', { status: 'ready' as const }]]);
    const inst = (id: string, versionId: string, health: InstanceHealth | undefined, service = 'web'): Instance => ({
      id, workspaceId: 'w1', projectId: 'p1', service, versionId, nodeId: 'n1', desired: 'running', createdAt: '',
      current: { state: 'running', nodeId: 'n1', pid: 1, host: '10.0.0.1', port: 5000, restarts: 0, lastExit: null, message: null, reportedAt: '', ...(health ? { health } : {}) },
    });
    const build = (instances: Instance[], routedVersions?: RouteInput['routedVersions']) => buildRouteTable({
      workspaces: new Map([['w1', { id: 'w1', name: 'default', createdAt: '' }]]),
      projects: [project], versions: new Map([['v1', v1], ['v2', v2]]), instancesOf: () => instances, nodes, domain: 'localhost',
      ...(routedVersions ? { routedVersions } : {}),
    });

    it('lists each upstream with its version (id and number) and weight 1', () => {
      const table = build([inst('i1', 'v1', 'healthy')]);
      assert.deepEqual(table.services['default/shop/web'].upstreams, [{ instanceId: 'i1', host: '10.0.0.1', port: 5000, version: { id: 'v1', number: 1 }, weight: 1 }]);
      assert.equal(table.services['default/shop/worker'], undefined, 'a service that does not listen is not routed');
    });

    it('routes healthy instances and those without a health check (or from older agents); never starting or unhealthy ones', () => {
      const table = build([inst('i1-healthy', 'v1', 'healthy'), inst('i2-none', 'v1', 'none'), inst('i3-older-agent', 'v1', undefined), inst('i4-starting', 'v1', 'starting'), inst('i5-unhealthy', 'v1', 'unhealthy')]);
      assert.deepEqual(table.services['default/shop/web'].upstreams.map((u) => u.instanceId), ['i1-healthy', 'i2-none', 'i3-older-agent']);
    });

    it("routes the project's routed version only, by default", () => {
      const table = build([inst('i1', 'v1', 'healthy'), inst('i2', 'v2', 'healthy')]);
      assert.deepEqual(table.services['default/shop/web'].upstreams.map((u) => u.instanceId), ['i1']);
    });

    it('routes several versions of a service at once, each with its weight, when asked (a rollout)', () => {
      const instances = [inst('i1', 'v1', 'healthy'), inst('i2', 'v1', 'healthy'), inst('i3', 'v2', 'healthy'), inst('i4', 'v2', 'starting')];
      const table = build(instances, () => [{ versionId: 'v1', weight: 3 }, { versionId: 'v2' }]);
      assert.deepEqual(
        table.services['default/shop/web'].upstreams.map((u) => [u.instanceId, u.version?.number, u.weight]),
        [['i1', 1, 3], ['i2', 1, 3], ['i3', 2, 1]],
      );
      assert.deepEqual(build(instances, (p) => (p.routedVersionId ? [{ versionId: p.routedVersionId }] : [])).services['default/shop/web'].upstreams.map((u) => u.instanceId), ['i1', 'i2']);
      assert.deepEqual(build(instances, () => [{ versionId: 'gone' }]).services, {}, 'a version not known routes nothing');
    });

    it('gives canaries waiting for promotion the share of as many old instances: 1 beside 4 takes a quarter', () => {
      const instances = [...['a', 'b', 'c', 'd'].map((k) => inst(`old-${k}`, 'v1', 'healthy')), inst('new-1', 'v2', 'healthy')];
      const upstreams = build(instances, () => [{ versionId: 'v1' }, { versionId: 'v2', canary: true }]).services['default/shop/web'].upstreams;
      const weight = (v: number) => upstreams.filter((u) => u.version?.number === v).reduce((sum, u) => sum + (u.weight ?? 1), 0);
      assert.equal(weight(2) / (weight(1) + weight(2)), 1 / 4);
      // Promoted (no longer canaries), or as many new as old: one instance, one share.
      const even = build(instances, () => [{ versionId: 'v1' }, { versionId: 'v2' }]).services['default/shop/web'].upstreams;
      assert.ok(even.every((u) => u.weight === 1));
    });
  });
});
