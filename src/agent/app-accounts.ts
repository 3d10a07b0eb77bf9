// Who a project's processes (instances, prepare commands) run as, and the HOME they get: while enjin runs as root,
// an unprivileged system user, so an app cannot read enjin's credentials, store or other apps' files.
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import { APP_USER, ensureSystemUser, type SystemUser } from './drivers/system-user.ts';
import { checkId } from './versions.ts';

export interface AppAccount {
  /** absent: the agent's own user (enjin does not run as root) */
  uid?: number;
  gid?: number;
  home: string;
}

/**
 * Where apps' files (version directories, HOMEs) live: in the agent's directory when an app user can pass through
 * every directory above it; otherwise (enjin run as root from a private directory such as /root/app) under
 * /var/lib/enjin, named after the agent's directory, rather than opening that private directory to apps.
 */
export function appsDirFor(agentDir: string): string {
  if (process.getuid?.() !== 0) return agentDir;
  const full = resolve(agentDir);
  let passable = true;
  for (let d = dirname(full); ; d = dirname(d)) {
    try {
      if (!(statSync(d).mode & 0o001)) passable = false;
    } catch {
      // not made yet: made by the agent, passable
    }
    if (d === dirname(d)) break;
  }
  return passable ? agentDir : join('/var/lib/enjin', `apps-${createHash('sha256').update(full).digest('hex').slice(0, 12)}`);
}

export class AppAccounts {
  private user: SystemUser | null = null;

  /**
   * homesDir: where per-project HOME directories go. ownHome: the HOME apps get when they run as the agent's own
   * user (then they can read whatever the agent can anyway).
   */
  /** cachesDir: where each project's build cache goes (default: beside homesDir) */
  constructor(private readonly homesDir: string, private readonly ownHome: string, private readonly cachesDir = join(dirname(homesDir), 'caches')) {}

  /** where every project's build cache lives */
  get cachesRoot(): string {
    return this.cachesDir;
  }

  /** true when apps run as another user than the agent */
  get separate(): boolean {
    return this.user !== null;
  }

  /** Creates the app user on first need when running as root. */
  async init(): Promise<void> {
    if (process.getuid?.() !== 0) return;
    this.user = await ensureSystemUser(APP_USER);
    mkdirSync(this.homesDir, { recursive: true, mode: 0o711 });
    chmodSync(this.homesDir, 0o711);
  }

  /**
   * The build cache of a project on this node (npm's and pip's caches, the last node_modules or virtualenv), kept
   * between its versions; made on first use, owned by the project's user and private to it, like its versions.
   */
  cacheDir(project: string): string {
    mkdirSync(this.cachesDir, { recursive: true, mode: 0o711 });
    const dir = join(this.cachesDir, checkId('project', project));
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const owner = this.owner(project);
    if (owner) {
      chmodSync(this.cachesDir, 0o711);
      chownSync(dir, owner.uid, owner.gid);
    }
    chmodSync(dir, 0o700);
    return dir;
  }

  /** The owner a project's files get (its version directories); null when apps run as the agent's user. */
  owner(_project: string): { uid: number; gid: number } | null {
    // One shared user for now; a per-project user slots in here (and in forProject) with tenancy.
    return this.user ? { uid: this.user.uid, gid: this.user.gid } : null;
  }

  /** The uid, gid and HOME a project's processes run with; the HOME is made on first use, private to that user. */
  forProject(project: string): AppAccount {
    const owner = this.owner(project);
    if (!owner) return { home: this.ownHome };
    const home = join(this.homesDir, checkId('project', project));
    mkdirSync(home, { recursive: true, mode: 0o700 });
    chownSync(home, owner.uid, owner.gid);
    chmodSync(home, 0o700);
    return { ...owner, home };
  }

  /**
   * Refuses a directory the app user cannot reach (every parent must let others pass, e.g. a data directory under
   * /root): every start would fail with a confusing EACCES otherwise.
   */
  checkReachable(dir: string): void {
    if (!this.user) return;
    for (let d = dir; ; d = dirname(d)) {
      const s = statSync(d);
      const bit = s.uid === this.user.uid ? 0o100 : s.gid === this.user.gid ? 0o010 : 0o001;
      if (!(s.mode & bit)) {
        throw new EnjinError('data_dir_unreachable', `apps run as the user ${this.user.name}, which cannot enter ${d} (mode ${(s.mode & 0o777).toString(8)}), on the way to ${dir}; use a data directory others may pass through (e.g. --data /var/lib/enjin) or \`chmod o+x ${d}\``, { status: 500 });
      }
      if (d === dirname(d)) return;
    }
  }
}
