// Builds the route table routers serve from the controller's state. Pure: the same state gives the same table.
import type { Instance, Node, Project, Version, Workspace } from '../../core/model.ts';
import type { RouteService, Upstream } from '../../core/messages.ts';
import { rolloutRoutedVersions } from '../rollout/routing.ts';

export interface RouteInput {
  workspaces: Map<string, Workspace>;
  projects: Iterable<Project>;
  versions: Map<string, Version>;
  instancesOf: (projectId: string) => Instance[];
  /** every known node: an instance is routed to only while the node it runs on is ready */
  nodes: ReadonlyMap<string, Pick<Node, 'status'>>;
  domain: string;
  /**
   * The versions whose instances take a project's requests, the first one's manifest giving the services' names and
   * timeouts. Absent: the project's routed version, and while a rollout runs both of its versions
   * (rollout/routing.ts), canaries weighed to one old instance's share.
   */
  routedVersions?: (project: Project) => readonly RoutedVersion[];
}

/** A version routed for a project, and the weight each of its instances gets (default 1). */
export interface RoutedVersion {
  versionId: string;
  weight?: number;
  /**
   * Canaries waiting for promotion: they run beside the full count of the old version (a surge), yet each takes the
   * share of one old instance, so 1 canary over 4 instances gets a quarter of the requests, not a fifth.
   */
  canary?: boolean;
}

/**
 * Weighs a service's upstreams so its `canary` instances (n of them, beside m others) take n/m of the requests: the
 * others get weight m − n, the canaries m (n·m / (n·m + m·(m − n)) = n/m). With as many canaries as others or more,
 * everyone weighs the same.
 */
function weighCanaries(upstreams: Upstream[], canaryVersions: ReadonlySet<string>): void {
  const n = upstreams.filter((u) => u.version && canaryVersions.has(u.version.id)).length;
  const m = upstreams.length - n;
  if (!n || !m || n >= m) return;
  for (const u of upstreams) u.weight = u.version && canaryVersions.has(u.version.id) ? m : m - n;
}

/**
 * Whether routers may send requests to the instance: meant to run, reported running with an address, by a node that
 * is ready, and ready itself: its health check passed ('healthy') or it has none ('none'; absent from older agents).
 * A down node's instances may still run, but nobody can tell, and its replacements are on the way. A 'starting'
 * instance has not answered a probe yet; an 'unhealthy' one failed its last: neither gets requests.
 */
export function isRoutable(i: Instance, nodes: ReadonlyMap<string, Pick<Node, 'status'>>): boolean {
  const c = i.current;
  if (!(i.desired === 'running' && c?.state === 'running' && !!c.port && !!c.host && nodes.get(c.nodeId)?.status === 'ready')) return false;
  const health = c.health ?? 'none';
  return health === 'healthy' || health === 'none';
}

/** `SERVICE.PROJECT.DOMAIN` in the default workspace, `SERVICE.PROJECT.WORKSPACE.DOMAIN` elsewhere. */
export function generatedHostname(service: string, project: string, workspace: string, domain: string): string {
  return workspace === 'default' ? `${service}.${project}.${domain}` : `${service}.${project}.${workspace}.${domain}`;
}

/**
 * `PROJECT.DOMAIN` (`PROJECT.WORKSPACE.DOMAIN` elsewhere): the name a Procfile-style project's `web` answers on
 * too, as a Heroku app does, when its processes come from a Procfile or a builder rather than from enjin.yaml.
 */
export function projectHostname(project: string, workspace: string, domain: string): string {
  return workspace === 'default' ? `${project}.${domain}` : `${project}.${workspace}.${domain}`;
}

/**
 * The project whose generated names cover `host`, or null: everything below PROJECT.DOMAIN (the generated
 * SERVICE.PROJECT.DOMAIN, deeper names, and the wildcard *.PROJECT.DOMAIN) is reserved for PROJECT, whether or not
 * that project exists yet, so a project created later never finds its generated names served by someone else.
 */
export function generatedNamespaceOwner(host: string, domain: string): string | null {
  const suffix = `.${domain.toLowerCase()}`;
  const h = host.toLowerCase();
  if (!h.endsWith(suffix)) return null;
  const labels = h.slice(0, -suffix.length).split('.');
  return labels.length >= 2 ? labels[labels.length - 1] : null;
}

export function serviceKey(workspace: string, project: string, service: string): string {
  return `${workspace}/${project}/${service}`;
}

export function buildRouteTable(input: RouteInput): { hosts: Record<string, string>; services: Record<string, RouteService> } {
  const hosts: Record<string, string> = {};
  const services: Record<string, RouteService> = {};
  const generated: Array<[string, string]> = [];
  const projectNames: Array<[string, string]> = [];
  const projects = [...input.projects].sort((a, b) => (a.id < b.id ? -1 : 1));
  for (const project of projects) {
    const routed = (input.routedVersions ?? rolloutRoutedVersions)(project)
      .map((r) => ({ version: input.versions.get(r.versionId), weight: r.weight ?? 1, canary: !!r.canary }))
      .filter((r): r is { version: Version; weight: number; canary: boolean } => !!r.version);
    if (!routed.length) continue;
    const version = routed[0].version;
    const ws = input.workspaces.get(project.workspaceId)?.name ?? 'default';
    const instances = input.instancesOf(project.id);
    for (const [name, spec] of Object.entries(version.manifest.services)) {
      if (!spec.listens) continue;
      const key = serviceKey(ws, project.name, name);
      const upstreams: Upstream[] = [];
      for (const { version: v, weight } of routed) {
        // A service another routed version does not listen with (renamed, or turned into a worker) gets nothing from it.
        if (!v.manifest.services[name]?.listens) continue;
        for (const i of instances) {
          if (i.service !== name || i.versionId !== v.id || !isRoutable(i, input.nodes)) continue;
          upstreams.push({ instanceId: i.id, host: i.current!.host!, port: i.current!.port!, version: { id: v.id, number: v.number }, weight });
        }
      }
      upstreams.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1));
      const canaries = routed.filter((r) => r.canary).map((r) => r.version.id);
      if (canaries.length) weighCanaries(upstreams, new Set(canaries));
      services[key] = spec.timeouts
        ? { key, upstreams, timeouts: { connectMs: spec.timeouts.connect * 1000, headerMs: spec.timeouts.header * 1000, idleMs: spec.timeouts.idle * 1000 } }
        : { key, upstreams };
      for (const h of spec.hostnames) hosts[h.toLowerCase()] = key;
      generated.push([generatedHostname(name, project.name, ws, input.domain).toLowerCase(), key]);
      if (name === 'web' && version.manifest.processesFrom) projectNames.push([projectHostname(project.name, ws, input.domain).toLowerCase(), key]);
    }
  }
  // A generated name always reaches its own project, even if an older manifest claimed it before that was refused.
  for (const [h, key] of generated) hosts[h] = key;
  // PROJECT.DOMAIN is outside the reserved SERVICE.PROJECT.DOMAIN space: a name a manifest claimed first keeps it.
  for (const [h, key] of projectNames) hosts[h] ??= key;
  return { hosts, services };
}
