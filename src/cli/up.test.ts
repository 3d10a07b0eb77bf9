import { test } from 'node:test';
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { defaultInstanceMemory, parseMemorySize } from './up.ts';

test('--instance-memory takes sizes with a unit, or off; nonsense and tiny limits are refused with a code', () => {
  assert.equal(parseMemorySize('512M'), 512 * 1024 ** 2);
  assert.equal(parseMemorySize('2g'), 2 * 1024 ** 3);
  assert.equal(parseMemorySize('1.5G'), 1.5 * 1024 ** 3);
  assert.equal(parseMemorySize('64MiB'), 64 * 1024 ** 2);
  assert.equal(parseMemorySize('off'), null);
  assert.equal(parseMemorySize('0'), null);
  for (const bad of ['lots', '-1G', '12X', '']) assert.throws(() => parseMemorySize(bad), { code: 'invalid_request' }, bad);
  assert.throws(() => parseMemorySize('1M'), { code: 'invalid_request', message: /at least 16M/ });
  assert.equal(defaultInstanceMemory(), Math.min(1024 ** 3, Math.floor(totalmem() / 2)));
});
