// Releases: what a deploy, a config change or a rollback adds to a project's history. A release is a version: a build
// (its own, or an earlier version's) plus the config its processes get. Pure decisions over the controller's state;
// ProjectChanges stores them and rolls them out.
import { conflict, EnjinError, invalid } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { ConfigVars, Project, ReleaseCause, Version } from '../core/model.ts';
import type { ControllerState } from './state.ts';

/** Who asked, and for a deploy from a git checkout, what it was. */
export interface ReleaseMeta {
  by: string;
  git?: { commit: string; message: string };
}

/** One `enjin config set/unset`: for the whole project, or for one service when `service` is given. */
export interface ConfigChange {
  set: Record<string, string>;
  unset: string[];
  service?: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NAME_MAX = 255;
/**
 * Config travels with every instance in desired-state messages over the bus (1 MB at most on NATS), so it is kept
 * small: 32 KiB for the whole config, as Heroku allows per app.
 */
const VALUE_MAX_BYTES = 32 * 1024;
const CONFIG_MAX_BYTES = 32 * 1024;
/** Set by enjin for every process: a config var of the same name would be overwritten or would break routing. */
const RESERVED = /^(PORT|ENJIN_.*)$/;

export const emptyConfig = (): ConfigVars => ({ project: {}, services: {} });

/** The version whose build `v` runs: an earlier version's for a config change or a rollback, else its own. */
export function buildIdOf(v: Version): string {
  return v.buildId ?? v.id;
}

/** The config the project's next release starts from: its current version's, or what was set before any release. */
export function configOf(state: ControllerState, project: Project): ConfigVars {
  const current = project.currentVersionId ? state.versions.get(project.currentVersionId) : undefined;
  return structuredClone((current ? current.config : project.config) ?? emptyConfig());
}

export function sameConfig(a: ConfigVars | undefined, b: ConfigVars | undefined): boolean {
  return JSON.stringify(normalized(a ?? emptyConfig())) === JSON.stringify(normalized(b ?? emptyConfig()));
}

/** Sorted, with empty service maps gone, so two configs that mean the same compare equal. */
function normalized(c: ConfigVars): ConfigVars {
  const sort = (m: Record<string, string>) => Object.fromEntries(Object.entries(m).sort(([x], [y]) => (x < y ? -1 : 1)));
  const services = Object.entries(c.services).filter(([, m]) => Object.keys(m).length).sort(([x], [y]) => (x < y ? -1 : 1));
  return { project: sort(c.project), services: Object.fromEntries(services.map(([s, m]) => [s, sort(m)])) };
}

/** A config without empty service maps: what is stored (absent when nothing is set at all). */
export function storedConfig(c: ConfigVars): ConfigVars | undefined {
  const n = normalized(c);
  return Object.keys(n.project).length || Object.keys(n.services).length ? n : undefined;
}

/** Checks a change (refusing it whole) and applies it to `config`; returns the new config and what changed, for people. */
export function applyConfigChange(config: ConfigVars, change: ConfigChange): { config: ConfigVars; description: string } {
  const names = [...Object.keys(change.set), ...change.unset];
  if (!names.length) throw invalid('nothing to change: give KEY=VALUE pairs to set or KEY names to unset');
  for (const name of names) {
    if (!NAME.test(name) || name.length > NAME_MAX) {
      throw new EnjinError('config_invalid', `config var name ${JSON.stringify(name.slice(0, 80))} is not allowed: use letters, digits and _, not starting with a digit (at most ${NAME_MAX} characters)`, { status: 400 });
    }
    if (RESERVED.test(name)) throw new EnjinError('config_invalid', `${name} is set by enjin for every process (PORT and ENJIN_*); choose another name`, { status: 400 });
  }
  for (const [name, value] of Object.entries(change.set)) {
    if (value.includes('\0')) throw new EnjinError('config_invalid', `the value of ${name} contains a NUL byte, which no environment variable can hold`, { status: 400 });
    if (Buffer.byteLength(value) > VALUE_MAX_BYTES) throw new EnjinError('config_invalid', `the value of ${name} is ${Buffer.byteLength(value)} bytes; a config var may hold at most ${VALUE_MAX_BYTES} (put larger data in a file or a volume)`, { status: 400 });
  }
  const both = change.unset.filter((n) => Object.hasOwn(change.set, n));
  if (both.length) throw invalid(`${both.join(', ')} is both set and unset; do one or the other`);
  const next = structuredClone(config);
  const target = change.service === undefined ? next.project : (next.services[change.service] ??= {});
  for (const [name, value] of Object.entries(change.set)) target[name] = value;
  for (const name of change.unset) {
    if (!Object.hasOwn(target, name)) throw new EnjinError('config_not_found', `${name} is not set${change.service ? ` for ${change.service}` : ''}; \`enjin config\` lists what is`, { status: 404 });
    delete target[name];
  }
  if (Buffer.byteLength(JSON.stringify(next)) > CONFIG_MAX_BYTES) {
    throw new EnjinError('config_invalid', `the project's config would be over ${CONFIG_MAX_BYTES / 1024} KiB; keep large data out of config vars (in a file, a volume or a database)`, { status: 400 });
  }
  const parts = [];
  if (Object.keys(change.set).length) parts.push(`set ${Object.keys(change.set).join(', ')}`);
  if (change.unset.length) parts.push(`unset ${change.unset.join(', ')}`);
  return { config: next, description: `${parts.join('; ')}${change.service ? ` (${change.service})` : ''}` };
}

export function nextVersionNumber(state: ControllerState, projectId: string): number {
  return Math.max(0, ...state.versionsOf(projectId).map((v) => v.number)) + 1;
}

/** A new release of `base`'s build with `config`: nothing is uploaded, unpacked or prepared again. */
export function releaseOfBuild(state: ControllerState, project: Project, base: Version, config: ConfigVars | undefined, cause: ReleaseCause, now: string): Version {
  const stored = config && storedConfig(config);
  return {
    id: newId('ver'),
    projectId: project.id,
    number: nextVersionNumber(state, project.id),
    sha256: base.sha256,
    size: base.size,
    manifest: base.manifest,
    createdAt: now,
    buildId: buildIdOf(base),
    ...(stored ? { config: stored } : {}),
    cause,
  };
}

/** The deploy's record: its commit and subject line when the CLI sent them. */
export function deployCause(meta: ReleaseMeta): ReleaseCause {
  const what = meta.git ? `deploy ${meta.git.commit.slice(0, 7)} ${meta.git.message}`.trim() : 'deploy';
  return { kind: 'deploy', description: what, by: meta.by, ...(meta.git ? { git: meta.git } : {}) };
}

/** Config with every value hidden: what listings show unless the values are asked for. */
export function redacted(c: ConfigVars): ConfigVars {
  const hide = (m: Record<string, string>) => Object.fromEntries(Object.keys(m).map((k) => [k, '<redacted>']));
  return { project: hide(c.project), services: Object.fromEntries(Object.entries(c.services).map(([s, m]) => [s, hide(m)])) };
}

/** What a config change releases: the current build with the changed config; before any release, only the config. */
export function configRelease(state: ControllerState, change: ConfigChange, meta: ReleaseMeta) {
  return (p: Project): { version: Version } | { config: ConfigVars | undefined } => {
    const { config, description } = applyConfigChange(configOf(state, p), change);
    const current = p.currentVersionId ? state.versions.get(p.currentVersionId) : undefined;
    if (!current) return { config: storedConfig(config) };
    if (change.service !== undefined && !Object.hasOwn(current.manifest.services, change.service)) {
      throw new EnjinError('unknown_service', `${p.name} has no service "${change.service}"; it has ${Object.keys(current.manifest.services).join(', ')}`, { status: 404 });
    }
    return { version: releaseOfBuild(state, p, current, config, { kind: 'config', description, by: meta.by }, new Date().toISOString()) };
  };
}

/**
 * What a rollback releases: the target's build and config as a new release. `target` finds the version asked for;
 * with `toPrevious`, the release before the current one is the target instead.
 */
export function rollbackRelease(state: ControllerState, target: (p: Project) => Version, toPrevious: boolean, meta: ReleaseMeta) {
  return (p: Project): { version: Version } => {
    const current = p.currentVersionId ? state.versions.get(p.currentVersionId) : undefined;
    if (!current) throw new EnjinError('not_deployed', `${p.name} has no release yet; deploy it first`, { status: 409 });
    let to: Version;
    if (!toPrevious) to = target(p);
    else {
      const earlier = state.versionsOf(p.id).filter((v) => v.number < current.number);
      if (!earlier.length) throw new EnjinError('no_earlier_version', `${p.name} has no release before v${current.number} to roll back to`, { status: 409 });
      to = earlier[earlier.length - 1];
    }
    if (buildIdOf(to) === buildIdOf(current) && sameConfig(to.config, current.config)) {
      throw conflict('conflict', `v${current.number} already runs the build and config of v${to.number}; nothing to roll back`);
    }
    const cause: ReleaseCause = { kind: 'rollback', description: `rollback to v${to.number}`, by: meta.by, rollbackTo: to.number };
    return { version: releaseOfBuild(state, p, to, to.config, cause, new Date().toISOString()) };
  };
}
