#!/usr/bin/env node
// The enjin binary: runs the compiled CLI (built by `npm ci` through the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const compiled = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(compiled)) {
  process.stderr.write('enjin: dist/ is missing; run `npm ci` (or `npm run build`) in the enjin checkout first\n');
  process.exit(1);
}
await import(compiled);
