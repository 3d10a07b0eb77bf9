// Runs the whole test suite: type-check, build (e2e tests run the real binary), then node:test
// over every *.test.ts beside the code and in test/.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// Two files run at a time. The longest first, the short unit tests last to fill the gaps, so the run ends when the
// work does rather than with one long file started late (the cluster fault suite alone takes about 4 minutes).
const LONGEST_FIRST = ['test/cluster-faults.test.ts'];
const byLength = (a, b) => {
  const rank = (f) => (LONGEST_FIRST.includes(f) ? 0 : f.startsWith('test/') ? 1 : 2);
  return rank(a) - rank(b) || (a < b ? -1 : 1);
};
const only = process.argv.slice(2);
const files = only.length ? only : [...find('src'), ...find('test')].sort(byLength);
run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
run('npx', ['tsc', '-p', 'tsconfig.build.json']);
run(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...files]);
