// The environment a builder asks for a version's processes (prepare commands and instances): its directories first on
// PATH, and variables naming paths in the version (VIRTUAL_ENV), made absolute here, where the version's place is known.
import { isAbsolute, join, normalize } from 'node:path';
import { invalid } from '../core/errors.ts';
import { ENV_KEY_PATTERN } from '../core/manifest.ts';

/** A path relative to the version that stays inside it; anything else from the bus is refused. */
function inside(versionDir: string, rel: unknown, what: string): string {
  if (typeof rel !== 'string' || rel === '' || isAbsolute(rel) || rel.includes('\0') || normalize(rel).split('/').includes('..')) {
    throw invalid(`${what} ${JSON.stringify(rel)} must be a path inside the version`);
  }
  return join(versionDir, rel);
}

/**
 * `env` with the builder's paths applied: `paths` (relative to `versionDir`) put before its PATH, `pathEnv` values
 * made absolute. Both are optional (older controllers send neither).
 */
export function withBuildPaths(env: Record<string, string>, versionDir: string, paths: unknown, pathEnv: unknown): Record<string, string> {
  if (paths === undefined && pathEnv === undefined) return env;
  const out = { ...env };
  if (paths !== undefined) {
    if (!Array.isArray(paths)) throw invalid('paths must be a list of directories inside the version');
    const dirs = paths.map((p) => inside(versionDir, p, 'path'));
    if (dirs.length) out.PATH = [...dirs, out.PATH ?? '/usr/local/bin:/usr/bin:/bin'].join(':');
  }
  if (pathEnv !== undefined) {
    if (!pathEnv || typeof pathEnv !== 'object' || Array.isArray(pathEnv)) throw invalid('pathEnv must map variable names to paths inside the version');
    for (const [key, rel] of Object.entries(pathEnv as Record<string, unknown>)) {
      if (!ENV_KEY_PATTERN.test(key) || key === 'PATH') throw invalid(`pathEnv: ${JSON.stringify(key)} is not a variable a builder may set`);
      out[key] = inside(versionDir, rel, `pathEnv.${key}`);
    }
  }
  return out;
}

/**
 * An instance's environment: what every instance starts from, its HOME, its spec's env, the builder's paths (a
 * virtualenv's bin) before the PATH it would otherwise get, and PORT when it listens.
 */
export function instanceEnv(
  base: Record<string, string>, home: string,
  spec: { env: Record<string, string>; listens: boolean; paths?: unknown; pathEnv?: unknown },
  versionDir: string, port: number | null,
): Record<string, string> {
  const env = withBuildPaths({ ...base, HOME: home, ...spec.env }, versionDir, spec.paths, spec.pathEnv);
  if (spec.listens && port !== null) env.PORT = String(port);
  return env;
}
