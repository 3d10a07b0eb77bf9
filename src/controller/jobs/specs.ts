// What an agent is told about an instance and its version: built from the controller's state, for the desired-state
// exchange and the prepare job alike.
import type { DesiredInstance, InstanceSpec, VersionSpec } from '../../core/messages.ts';
import type { Instance, Project, Version } from '../../core/model.ts';
import { healthOf, restartOf } from '../../core/service-policies.ts';
import type { ControllerState } from '../state.ts';

/** The parts of the controller specs are built from. */
export interface SpecSource {
  readonly state: ControllerState;
}

export function versionSpec(host: SpecSource, project: Project, version: Version): VersionSpec {
  return {
    versionId: version.id,
    project: project.name,
    sha256: version.sha256,
    size: version.size,
    prepare: version.manifest.prepare,
    env: version.manifest.env,
    number: version.number,
    // Only when a builder ran: older agents never see fields they do not know for versions without one.
    ...buildFields(version),
  };
}

/** What a builder adds to the specs: its record for the prepare log, and the paths of the version's processes. */
function buildFields(version: Version): Pick<VersionSpec, 'build' | 'paths' | 'pathEnv'> {
  const b = version.manifest.build;
  if (!b) return {};
  return { build: { builder: b.builder, reason: b.reason }, ...pathFields(version) };
}

function pathFields(version: Version): Pick<InstanceSpec, 'paths' | 'pathEnv'> {
  const b = version.manifest.build;
  if (!b) return {};
  return { ...(b.paths.length ? { paths: b.paths } : {}), ...(Object.keys(b.pathEnv).length ? { pathEnv: b.pathEnv } : {}) };
}

/**
 * The environment a release gives a process of `service` (an instance, a release command, a one-off run): manifest
 * env, the service's env, then the release's config (project-wide, then the service's own), then ENJIN_*. It holds
 * secrets: it goes to agents, never into a job log or an API answer. `service` null: the release command's, which
 * belongs to no service (project-wide env and config only).
 */
export function releaseEnv(project: Project, version: Version, service: string | null): Record<string, string> {
  const config = version.config;
  const own = (map: Record<string, Record<string, string>> | undefined) => (service !== null && map && Object.hasOwn(map, service) ? map[service] : undefined);
  return {
    ...version.manifest.env,
    ...own(Object.fromEntries(Object.entries(version.manifest.services).map(([n, s]) => [n, s.env]))),
    ...config?.project,
    ...own(config?.services),
    ENJIN_PROJECT: project.name,
    ...(service !== null ? { ENJIN_SERVICE: service } : {}),
    ENJIN_VERSION: String(version.number),
  };
}

/** The version whose build `version` runs: itself, or the earlier version a config change or rollback reuses. */
export function buildVersion(host: SpecSource, version: Version): Version {
  return (version.buildId && host.state.versions.get(version.buildId)) || version;
}

export function instanceSpec(host: SpecSource, project: Project, version: Version, instanceId: string, service: string): InstanceSpec {
  const spec = version.manifest.services[service];
  const ws = host.state.workspaces.get(project.workspaceId)?.name ?? 'default';
  return {
    instanceId,
    workspace: ws,
    project: project.name,
    service,
    versionId: version.id,
    ...(version.buildId && version.buildId !== version.id ? { buildId: version.buildId } : {}),
    command: spec.command,
    env: { ...releaseEnv(project, version, service), ENJIN_INSTANCE: instanceId },
    listens: spec.listens,
    healthPath: spec.health?.http ?? null,
    startTimeout: spec.health?.startTimeout ?? 60,
    health: healthOf(spec),
    restart: restartOf(spec),
    stopTimeout: spec.stopTimeout,
    ...pathFields(version),
    ...(spec.volumes && Object.keys(spec.volumes).length ? { volumes: spec.volumes } : {}),
  };
}

/**
 * Everything placed on `nodeId`, as the node should be told it. An instance whose project, version or service is
 * gone cannot be described; it is left out, which never makes a node stop it (it stays visible in reports).
 */
export function desiredInstancesFor(host: SpecSource, nodeId: string): DesiredInstance[] {
  const out: DesiredInstance[] = [];
  for (const i of host.state.instancesOnNode(nodeId)) {
    if (i.nodeId !== nodeId) continue; // reported here, placed elsewhere
    const d = desiredInstance(host, i);
    if (d) out.push(d);
  }
  return out;
}

export function desiredInstance(host: SpecSource, i: Instance): DesiredInstance | null {
  const project = host.state.projects.get(i.projectId);
  const version = host.state.versions.get(i.versionId);
  if (!project || !version || !version.manifest.services[i.service]) return null;
  // While routers drain it, the node keeps it running: requests in flight finish before the process goes.
  const desired = i.desired === 'stopped' && host.state.isDraining(i.id) ? 'running' : i.desired;
  return { spec: instanceSpec(host, project, version, i.id, i.service), version: versionSpec(host, project, buildVersion(host, version)), desired };
}
