// Volumes on this node: one directory per (workspace, project, volume name) that outlives the project's versions,
// made before a process that uses it starts, private to the project's app user, measured now and then, and removed
// only when asked (`enjin destroy --volumes`).
//
// Processes find their directory in ENJIN_VOLUME_<NAME>. enjin's processes do not run in a mount namespace of their
// own (the process driver runs them as a plain user in a cgroup), so the manifest's path (`data: /data`) is recorded
// but not bind-mounted; a driver with a mount namespace would mount the directory there.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { EnjinError, invalid } from '../core/errors.ts';
import { NAME_PATTERN } from '../core/ids.ts';
import type { NodeVolume } from '../core/model.ts';
import { VOLUME_NAME_PATTERN, volumeEnvName, volumePathProblem } from '../core/volumes.ts';
import type { AppAccounts } from './app-accounts.ts';

/** The variables a process gets for its volumes: name → directory becomes ENJIN_VOLUME_<NAME> → directory. */
export function volumeEnv(dirs: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, dir] of Object.entries(dirs)) env[volumeEnvName(name)] = dir;
  return env;
}

/** Checks volumes that arrived over the bus (name → path) before any of it reaches the file system. */
export function checkVolumes(volumes: unknown): Record<string, string> {
  if (volumes === undefined) return {};
  if (!volumes || typeof volumes !== 'object' || Array.isArray(volumes)) throw invalid('volumes must map volume names to paths');
  for (const [name, path] of Object.entries(volumes as Record<string, unknown>)) {
    if (!VOLUME_NAME_PATTERN.test(name)) throw invalid(`volume name ${JSON.stringify(name)} is not valid`);
    const why = typeof path === 'string' ? volumePathProblem(path) : 'must be a string';
    if (why) throw invalid(`volume ${name}: path ${JSON.stringify(path)} ${why}`);
  }
  return volumes as Record<string, string>;
}

function checkName(what: string, name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw invalid(`${what} ${JSON.stringify(name)} is not a valid name`);
  return name;
}

/** Bytes of the regular files under `dir` (symbolic links are not followed); a file gone meanwhile counts nothing. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) total += await bytesUnder(path);
    else if (e.isFile()) {
      try {
        total += (await lstat(path)).size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
  return total;
}

export class VolumeStore {
  /** "workspace/project/name" → last measurement */
  private readonly sizes = new Map<string, { sizeBytes: number; measuredAt: string }>();
  private measuring: Promise<NodeVolume[]> | null = null;

  /**
   * root: where volumes live (beside the apps' versions, where the app user can pass). onNew: a volume was made, so
   * the controller should hear of it now (it pins the service to this node from then on).
   */
  constructor(private readonly root: string, private readonly accounts: AppAccounts, private readonly onNew: () => void = () => {}) {}

  /** The directory of one volume (not made). */
  dirOf(workspace: string, project: string, name: string): string {
    if (!VOLUME_NAME_PATTERN.test(name)) throw invalid(`volume name ${JSON.stringify(name)} is not valid`);
    return join(this.root, checkName('workspace', workspace), checkName('project', project), name);
  }

  /**
   * Makes the project's volume directories that do not exist yet, owned by its app user and private to it (0700),
   * and returns the variables its process gets. Existing directories and their files are left as they are.
   */
  ensure(workspace: string, project: string, volumes: unknown): Record<string, string> {
    const wanted = checkVolumes(volumes);
    const dirs: Record<string, string> = {};
    let made = false;
    for (const name of Object.keys(wanted)) {
      const dir = this.dirOf(workspace, project, name);
      if (!existsSync(dir)) {
        // The levels above are passable (not readable) by others: a tenant cannot list which projects have volumes.
        const pass = this.accounts.separate ? 0o711 : 0o700;
        for (const level of [this.root, join(this.root, workspace), join(this.root, workspace, project)]) {
          mkdirSync(level, { recursive: true, mode: pass });
          chmodSync(level, pass);
        }
        mkdirSync(dir, { mode: 0o700 });
        made = true;
      }
      const owner = this.accounts.owner(project);
      if (owner) {
        const s = lstatSync(dir);
        if (s.uid !== owner.uid || s.gid !== owner.gid) chownSync(dir, owner.uid, owner.gid);
      }
      chmodSync(dir, 0o700);
      dirs[name] = dir;
    }
    if (made) this.onNew();
    return volumeEnv(dirs);
  }

  /** Every volume on the node, with its size as last measured (cheap: reads three levels of directories). */
  list(): NodeVolume[] {
    const out: NodeVolume[] = [];
    for (const workspace of this.names(this.root)) {
      for (const project of this.names(join(this.root, workspace))) {
        for (const name of this.names(join(this.root, workspace, project))) {
          const size = this.sizes.get(`${workspace}/${project}/${name}`);
          out.push({ workspace, project, name, dir: join(this.root, workspace, project, name), sizeBytes: size?.sizeBytes ?? null, measuredAt: size?.measuredAt ?? null });
        }
      }
    }
    return out;
  }

  /** Measures every volume's size now (one walk at a time: callers during a walk share it). */
  measure(): Promise<NodeVolume[]> {
    if (!this.measuring) {
      const run = this.measureAll();
      this.measuring = run;
      // Cleared once settled, never before it is set (a walk over no volume settles without waiting at all).
      const clear = () => {
        if (this.measuring === run) this.measuring = null;
      };
      run.then(clear, clear);
    }
    return this.measuring;
  }

  private async measureAll(): Promise<NodeVolume[]> {
    for (const v of this.list()) {
      const sizeBytes = await bytesUnder(v.dir);
      this.sizes.set(`${v.workspace}/${v.project}/${v.name}`, { sizeBytes, measuredAt: new Date().toISOString() });
    }
    return this.list();
  }

  /** Removes a project's volumes (those named, or all) with their files, for good; returns what was removed. */
  drop(workspace: string, project: string, names?: string[]): NodeVolume[] {
    checkName('workspace', workspace);
    checkName('project', project);
    if (names !== undefined && (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || !VOLUME_NAME_PATTERN.test(n)))) throw invalid('names must be a list of volume names');
    const removed = this.list().filter((v) => v.workspace === workspace && v.project === project && (!names || names.includes(v.name)));
    for (const v of removed) {
      rmSync(v.dir, { recursive: true, force: true });
      this.sizes.delete(`${v.workspace}/${v.project}/${v.name}`);
    }
    const projectDir = join(this.root, workspace, project);
    if (removed.length && this.names(projectDir).length === 0) rmSync(projectDir, { recursive: true, force: true });
    return removed;
  }

  /** The names of the valid entries of a directory of volumes (anything else there is not enjin's and is ignored). */
  private names(dir: string): string[] {
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && (NAME_PATTERN.test(e.name) || VOLUME_NAME_PATTERN.test(e.name))).map((e) => e.name).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }
}

/**
 * The ENJIN_VOLUME_* variables of a process of `project` that uses `volumes` (name → path), its directories made if
 * new; nothing when it uses none. `who` names the process for the error of an agent that keeps no volumes.
 */
export function volumeEnvFor(store: Pick<VolumeStore, 'ensure'> | undefined, who: string, workspace: string, project: string, volumes: Record<string, string> | undefined): Record<string, string> {
  if (!volumes || Object.keys(volumes).length === 0) return {};
  if (!store) throw new EnjinError('volumes_unsupported', `this agent keeps no volumes; ${who} needs ${Object.keys(volumes).join(', ')}`, { status: 500 });
  return store.ensure(workspace, project, volumes);
}
