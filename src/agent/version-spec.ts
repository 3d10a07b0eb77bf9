// What the agent accepts as a version (and ids that become file names) from the bus: checked before anything touches
// the disk.
import { invalid } from '../core/errors.ts';
import type { VersionSpec } from '../core/messages.ts';
import { withBuildPaths } from './build-env.ts';

/** Ids become file names: anything else could reach outside the data directory. */
export const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkId(what: string, id: unknown): string {
  if (typeof id !== 'string' || !SAFE_ID.test(id) || id.includes('..')) {
    throw invalid(`${what} ${JSON.stringify(id)} is not a valid id (letters, digits, '_', '-', '.')`);
  }
  return id;
}

/** Checks a version spec that arrived over the bus. */
export function checkVersion(v: unknown): VersionSpec {
  const s = v as VersionSpec;
  if (!s || typeof s !== 'object') throw invalid('prepare needs a version');
  checkId('version', s.versionId);
  if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(s.sha256)) throw invalid(`version ${s.versionId}: sha256 must be 64 hex digits`);
  if (!Number.isSafeInteger(s.size) || s.size < 0) throw invalid(`version ${s.versionId}: size must be a number of bytes`);
  if (!Array.isArray(s.prepare) || s.prepare.some((c) => typeof c !== 'string')) throw invalid(`version ${s.versionId}: prepare must be a list of commands`);
  if (!s.env || typeof s.env !== 'object' || Object.values(s.env).some((x) => typeof x !== 'string')) throw invalid(`version ${s.versionId}: env must map names to strings`);
  if (s.build !== undefined && (!s.build || typeof s.build.builder !== 'string' || typeof s.build.reason !== 'string')) throw invalid(`version ${s.versionId}: build must say which builder and why`);
  // paths and pathEnv are checked where they are applied (withBuildPaths), against the version's directory.
  withBuildPaths({}, '/version', s.paths, s.pathEnv);
  return s;
}

