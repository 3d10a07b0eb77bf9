// `npm run bench`: every benchmark in turn, or the ones named with --only (router, up-load, deploy-builders); each prints its table.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benches: Record<string, { file: string; what: string }> = {
  router: { file: 'router.ts', what: 'the router against nginx and a direct backend (needs wrk and nginx)' },
  'up-load': { file: 'up-load.ts', what: 'router latency through enjin up, alone and under 500 GET /v1/jobs per second' },
  'deploy-builders': { file: 'deploy-builders.ts', what: 'first and code-only second deploy of the Node and Python builder samples (build cache)' },
  'request-id': { file: 'request-id.ts', what: 'what X-Request-Id adds to the router per request (ns)' },
};

const args = process.argv.slice(2);
const onlyAt = args.indexOf('--only');
const only = onlyAt === -1 ? Object.keys(benches) : (args[onlyAt + 1] ?? '').split(',').filter(Boolean);
const unknown = only.filter((name) => !(name in benches));
if (unknown.length > 0 || (onlyAt !== -1 && only.length === 0)) {
  console.error(`usage: npm run bench [-- --only NAME[,NAME]]; benchmarks:\n${Object.entries(benches).map(([n, b]) => `  ${n.padEnd(16)} ${b.what}`).join('\n')}`);
  process.exit(2);
}

const benchDir = dirname(fileURLToPath(import.meta.url));
let failed = 0;
for (const name of only) {
  console.log(`\n== ${name}: ${benches[name].what}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(benchDir, benches[name].file)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exitCode = failed > 0 ? 1 : 0;
