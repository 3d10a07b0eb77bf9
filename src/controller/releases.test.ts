// Config changes as releases: what a change may contain, what it does to the config, and what a process's
// environment becomes (manifest env < service env < project config < service config < ENJIN_*).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnjinError } from '../core/errors.ts';
import type { Project, Version } from '../core/model.ts';
import { applyConfigChange, emptyConfig, redacted, sameConfig, storedConfig } from './releases.ts';
import { releaseEnv } from './jobs/specs.ts';

const code = (c: string) => (err: unknown) => err instanceof EnjinError && err.code === c;

test('a change sets and unsets, project-wide or for one service, and says what it did', () => {
  const a = applyConfigChange(emptyConfig(), { set: { A: '1', B: '2' }, unset: [] });
  assert.deepEqual(a.config, { project: { A: '1', B: '2' }, services: {} });
  assert.equal(a.description, 'set A, B');
  const b = applyConfigChange(a.config, { set: { A: 'web' }, unset: [], service: 'web' });
  assert.deepEqual(b.config.services, { web: { A: 'web' } });
  assert.equal(b.description, 'set A (web)');
  const c = applyConfigChange(b.config, { set: {}, unset: ['B'] });
  assert.deepEqual(c.config.project, { A: '1' });
  assert.equal(c.description, 'unset B');
  assert.deepEqual(a.config.project, { A: '1', B: '2' }, 'the input is left as it was');
});

test('bad changes are refused whole with a code', () => {
  assert.throws(() => applyConfigChange(emptyConfig(), { set: {}, unset: [] }), code('invalid_request'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { '1A': 'x' }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { 'A-B': 'x' }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { PORT: '80' }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { ENJIN_PROJECT: 'x' }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { A: 'a\0b' }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: { A: 'x'.repeat(40_000) }, unset: [] }), code('config_invalid'));
  assert.throws(() => applyConfigChange(emptyConfig(), { set: {}, unset: ['MISSING'] }), code('config_not_found'));
  assert.throws(() => applyConfigChange({ project: { A: '1' }, services: {} }, { set: { A: '2' }, unset: ['A'] }), code('invalid_request'));
});

test('configs compare by meaning; empty ones are not stored; listings redact values', () => {
  assert.ok(sameConfig({ project: { A: '1', B: '2' }, services: { web: {} } }, { project: { B: '2', A: '1' }, services: {} }));
  assert.ok(!sameConfig({ project: { A: '1' }, services: {} }, { project: { A: '2' }, services: {} }));
  assert.ok(sameConfig(undefined, emptyConfig()));
  assert.equal(storedConfig({ project: {}, services: { web: {} } }), undefined);
  assert.deepEqual(redacted({ project: { A: 's' }, services: { web: { B: 's' } } }), { project: { A: '<redacted>' }, services: { web: { B: '<redacted>' } } });
});

test("a process's environment: manifest, service, project config, service config, then ENJIN_*", () => {
  const project = { name: 'shop' } as Project;
  const version = {
    number: 4,
    manifest: { env: { A: 'manifest', B: 'manifest', C: 'manifest' }, services: { web: { env: { B: 'service', C: 'service' } }, worker: { env: {} } } },
    config: { project: { C: 'config', D: 'config' }, services: { web: { D: 'web config' } } },
  } as unknown as Version;
  assert.deepEqual(releaseEnv(project, version, 'web'), { A: 'manifest', B: 'service', C: 'config', D: 'web config', ENJIN_PROJECT: 'shop', ENJIN_SERVICE: 'web', ENJIN_VERSION: '4' });
  assert.deepEqual(releaseEnv(project, version, 'worker'), { A: 'manifest', B: 'manifest', C: 'config', D: 'config', ENJIN_PROJECT: 'shop', ENJIN_SERVICE: 'worker', ENJIN_VERSION: '4' });
  assert.deepEqual(releaseEnv(project, version, null), { A: 'manifest', B: 'manifest', C: 'config', D: 'config', ENJIN_PROJECT: 'shop', ENJIN_VERSION: '4' }, 'a release command belongs to no service');
  assert.equal(releaseEnv(project, version, 'constructor').ENJIN_SERVICE, 'constructor', 'a name on Object.prototype is nobody\'s env');
});

test('the whole config stays small enough to travel with every instance', () => {
  let config = emptyConfig();
  for (let i = 0; i < 3; i++) config = applyConfigChange(config, { set: { [`K${i}`]: 'x'.repeat(10_000) }, unset: [] }).config;
  assert.throws(() => applyConfigChange(config, { set: { K3: 'x'.repeat(10_000) }, unset: [] }), code('config_invalid'));
});
