// Runs the node builder's script for real in a scratch directory: the fallback to npm when yarn is missing, and the
// cache filled then reused.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { NODE_SCRIPT } from './scripts.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-builder-scripts-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A PATH with node and npm but no yarn: the directory of this node only, and the system's basics. */
function pathWithoutYarn(): string {
  const out = execFileSync('sh', ['-c', 'command -v yarn || true']).toString().trim();
  const dirs = [dirname(process.execPath), '/usr/bin', '/bin'];
  return dirs.filter((d) => !out || dirname(out) !== d).join(':');
}

function runNodeScript(dir: string, installer: string, cache: string): string {
  writeFileSync(join(dir, 'node.sh'), NODE_SCRIPT);
  return execFileSync('sh', ['node.sh', installer], { cwd: dir, env: { PATH: pathWithoutYarn(), HOME: root, ENJIN_CACHE_DIR: cache }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('the node builder script', () => {
  it('falls back to npm install when yarn is missing, says so, and reuses node_modules while yarn.lock is unchanged', (t) => {
    const probe = execFileSync('sh', ['-c', 'command -v yarn || true'], { env: { PATH: pathWithoutYarn() } }).toString().trim();
    if (probe) return t.skip('yarn is installed in the same directory as node');
    const cache = join(root, 'cache');
    const app = (name: string) => {
      const dir = join(root, name);
      execFileSync('mkdir', ['-p', dir]);
      writeFileSync(join(dir, 'package.json'), '{"name":"x","version":"1.0.0","private":true}\n');
      writeFileSync(join(dir, 'yarn.lock'), '# yarn lockfile v1\n');
      return dir;
    };
    const first = runNodeScript(app('v1'), 'yarn', cache);
    assert.match(first, /yarn\.lock found but yarn is not installed on this node: installing with npm install instead/);
    assert.match(first, /saved node_modules in the cache/);
    assert.equal(readdirSync(cache).filter((e) => e.startsWith('node_modules-')).length, 1);

    const second = runNodeScript(app('v2'), 'yarn', cache);
    assert.match(second, /reused node_modules from the cache \(yarn\.lock unchanged/);
    assert.ok(existsSync(join(root, 'v2', 'node_modules')));

    const v3 = app('v3');
    writeFileSync(join(v3, 'yarn.lock'), '# yarn lockfile v1\n# changed\n');
    assert.match(runNodeScript(v3, 'yarn', cache), /no cached node_modules/);
    assert.equal(readdirSync(cache).filter((e) => e.startsWith('node_modules-')).length, 1, 'the older entry is dropped');
  });
});
