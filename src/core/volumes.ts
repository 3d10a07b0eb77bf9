// Volumes: named directories on a node that outlive a project's versions (a SQLite file, uploads). The rules of their
// names and paths, the variable a process finds its directory in, and which volumes a manifest's processes use.
import type { Manifest, ServiceSpec } from './model.ts';

/** A volume's name: lower-case letters, digits and dashes, as in a DNS label (it becomes a directory and a variable). */
export const VOLUME_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const VOLUME_NAME_RULE = 'lower-case letters, digits and dashes, starting and ending with a letter or digit, at most 63 characters';

/** The variable holding a volume's directory: data → ENJIN_VOLUME_DATA, media-files → ENJIN_VOLUME_MEDIA_FILES. */
export function volumeEnvName(name: string): string {
  return `ENJIN_VOLUME_${name.toUpperCase().replace(/-/g, '_')}`;
}

/** Why `path` cannot be where a volume is mounted, or null: it must be absolute, plain, and not the root. */
export function volumePathProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'must be an absolute path, e.g. /data';
  if (path.includes('\0')) return 'contains a NUL character';
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return 'cannot be / itself; name a directory, e.g. /data';
  if (parts.some((p) => p === '.' || p === '..')) return 'must not contain . or .. segments';
  return null;
}

/** A path as it is kept: no trailing or doubled slashes. */
export function normalizeVolumePath(path: string): string {
  return `/${path.split('/').filter(Boolean).join('/')}`;
}

/**
 * Every service with the project-wide volumes applied: the service's own entries add to them and win on a name.
 * The field is set only on services that have at least one volume.
 */
export function withProjectVolumes(services: Record<string, ServiceSpec>, projectWide: Record<string, string> | undefined): Record<string, ServiceSpec> {
  if (!projectWide || Object.keys(projectWide).length === 0) return services;
  const out: Record<string, ServiceSpec> = {};
  for (const [name, spec] of Object.entries(services)) out[name] = { ...spec, volumes: { ...projectWide, ...spec.volumes } };
  return out;
}

/** The volumes of one service (name → path); empty when it has none. */
export function serviceVolumes(manifest: Manifest, service: string): Record<string, string> {
  return manifest.services[service]?.volumes ?? {};
}

/**
 * Every volume any process of the manifest uses, name → path: what a release command (which belongs to no one
 * service) sees. Where two services mount one volume at different paths, the first service's path is given.
 */
export function manifestVolumes(manifest: Manifest): Record<string, string> {
  const out: Record<string, string> = { ...manifest.volumes };
  for (const spec of Object.values(manifest.services)) {
    for (const [name, path] of Object.entries(spec.volumes ?? {})) if (!(name in out)) out[name] = path;
  }
  return out;
}

/** The services of the manifest that use volume `name`. */
export function servicesUsing(manifest: Manifest, name: string): string[] {
  return Object.values(manifest.services).filter((s) => s.volumes && name in s.volumes).map((s) => s.name);
}
