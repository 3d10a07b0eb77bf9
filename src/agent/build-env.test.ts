// Tests for applying a builder's paths to a process's environment: relative to the version, never outside it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EnjinError } from '../core/errors.ts';
import { withBuildPaths } from './build-env.ts';

describe('withBuildPaths', () => {
  it('puts the builder\'s directories first on PATH and makes pathEnv absolute', () => {
    const env = withBuildPaths({ PATH: '/usr/bin:/bin', A: '1' }, '/v/ver_1', ['.venv/bin'], { VIRTUAL_ENV: '.venv' });
    assert.deepEqual(env, { PATH: '/v/ver_1/.venv/bin:/usr/bin:/bin', A: '1', VIRTUAL_ENV: '/v/ver_1/.venv' });
  });

  it('leaves the environment alone when an older controller sent neither', () => {
    const base = { PATH: '/bin' };
    assert.equal(withBuildPaths(base, '/v/x', undefined, undefined), base);
  });

  it('refuses paths leaving the version and variables a builder may not set', () => {
    for (const [paths, pathEnv] of [[['../other/bin'], undefined], [['/usr/bin'], undefined], ['bin', undefined], [undefined, { VIRTUAL_ENV: '../x' }], [undefined, { PATH: 'bin' }], [undefined, { 'A B': 'x' }]] as const) {
      assert.throws(() => withBuildPaths({}, '/v/x', paths, pathEnv), (e: EnjinError) => e.code === 'invalid_request', JSON.stringify([paths, pathEnv]));
    }
  });
});
