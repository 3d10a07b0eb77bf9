// Finds the cgroup hierarchies of this host (v1 controllers, the v2 unified tree, or both) and where the agent may
// make a cgroup per instance: under its own cgroup, in a directory named `enjin`.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** auto: v2 when the host is pure v2, else v1 when its freezer is mounted, else the v2 tree of a hybrid host. */
export type CgroupMode = 'auto' | 'v1' | 'v2' | 'off';

/** The v1 hierarchies an instance is placed in; freezer is the one that tracks (and freezes) its processes. */
export const V1_CONTROLLERS = ['freezer', 'memory', 'pids', 'cpuacct'] as const;

export interface CgroupLayout {
  version: 1 | 2;
  /** v1: controller → directory the instance cgroups go in; v2: { unified: that directory } */
  bases: Record<string, string>;
  /** whether an instance's memory can be limited */
  memory: boolean;
}

interface Mount {
  root: string;
  point: string;
  fstype: string;
  options: string[];
}

function mounts(): Mount[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const f = left.split(' ');
    const [fstype, , superOptions] = right.split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    out.push({ root: unescape(f[3]), point: unescape(f[4]), fstype, options: (superOptions ?? '').split(',') });
  }
  return out;
}

/** mountinfo escapes spaces and the like as octal */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** This process's cgroup path in each hierarchy: controller name (or '' for v2) → path. */
function ownPaths(): Map<string, string> {
  const out = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const c of m[1] ? m[1].split(',') : ['']) out.set(c, m[2]);
  }
  return out;
}

/** Where a hierarchy mounted at `mount` holds this process's cgroup, and so where ours go. */
function baseIn(mount: Mount, own: string | undefined): string {
  let path = own ?? '/';
  // In a container the mount's root may be the container's cgroup: paths are then relative to it.
  if (mount.root !== '/' && path.startsWith(mount.root)) path = path.slice(mount.root.length) || '/';
  return join(mount.point, path, 'enjin');
}

function writable(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

function v1Layout(all: Mount[], own: Map<string, string>): CgroupLayout | null {
  const bases: Record<string, string> = {};
  for (const c of V1_CONTROLLERS) {
    const m = all.find((x) => x.fstype === 'cgroup' && x.options.includes(c));
    if (m) bases[c] = baseIn(m, own.get(c));
  }
  if (!bases.freezer || !writable(bases.freezer)) return null;
  for (const c of Object.keys(bases)) if (c !== 'freezer' && !writable(bases[c])) delete bases[c];
  return { version: 1, bases, memory: Boolean(bases.memory) };
}

function v2Layout(all: Mount[], own: Map<string, string>, pureOnly: boolean): CgroupLayout | null {
  const m = all.find((x) => x.fstype === 'cgroup2' && (!pureOnly || x.point === '/sys/fs/cgroup'));
  if (!m) return null;
  const base = baseIn(m, own.get(''));
  if (!writable(base)) return null;
  // Instance cgroups get the memory and pids controllers only if our base gets them from its parent; on a hybrid
  // host they are bound to v1 and the v2 tree only tracks, freezes and kills.
  let memory = false;
  try {
    const parent = join(base, '..');
    const available = readFileSync(join(parent, 'cgroup.controllers'), 'utf8').split(/\s+/);
    if (available.includes('memory')) {
      const enabled = readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8').split(/\s+/);
      // Fails (EBUSY) if our own cgroup holds processes and is not the root: then we run without limits.
      if (!enabled.includes('memory')) writeFileSync(join(parent, 'cgroup.subtree_control'), '+memory');
      writeFileSync(join(base, 'cgroup.subtree_control'), '+memory');
      memory = true;
    }
  } catch {
    memory = false;
  }
  return { version: 2, bases: { unified: base }, memory };
}

/** The layout to use, or null when this process cannot make cgroups (not root, none mounted, or asked not to). */
export function detectCgroups(mode: CgroupMode = 'auto'): CgroupLayout | null {
  if (mode === 'off' || (process.getuid && process.getuid() !== 0)) return null;
  const all = mounts();
  const own = ownPaths();
  if (mode === 'v1') return v1Layout(all, own);
  if (mode === 'v2') return v2Layout(all, own, false);
  const pureV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  return (pureV2 ? v2Layout(all, own, true) : null) ?? v1Layout(all, own) ?? v2Layout(all, own, false);
}
