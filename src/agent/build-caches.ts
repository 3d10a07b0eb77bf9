// Projects' build caches on a node (npm's and pip's caches, the last node_modules or virtualenv: see
// core/builders): made by AppAccounts.cacheDir on a project's first prepare, and dropped here once no version of the
// project is left on the node (destroyed, or moved away), so a cache is for the next version, not forever.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeptVersion } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('build-caches');

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Removes the caches under `root` of projects none of the `kept` versions belongs to. Does nothing when a version's
 * marker does not say its project (an older agent wrote it): then nothing here can be sure.
 */
export async function dropCachesOfGoneProjects(root: string, kept: readonly KeptVersion[]): Promise<string[]> {
  if (kept.some((k) => k.project === null)) return [];
  const projects = new Set(kept.map((k) => k.project!));
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const dropped: string[] = [];
  for (const name of names) {
    if (projects.has(name) || !SAFE_NAME.test(name) || name.includes('..')) continue;
    await rm(join(root, name), { recursive: true, force: true });
    log.info({ project: name }, 'removed the build cache of a project with no version left on this node');
    dropped.push(name);
  }
  return dropped;
}
