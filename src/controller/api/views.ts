// The API's views of entities: what the controller's state looks like to a client (shapes from core/api.ts).
import type { Instance, Project, Version } from '../../core/model.ts';
import type { InstanceView, ProjectView, VersionView } from '../../core/api.ts';
import type { Controller } from '../controller.ts';
import { generatedHostname } from '../routes/build.ts';

export function byServiceThenId(a: { project: string; service: string; id: string }, b: { project: string; service: string; id: string }): number {
  return a.project.localeCompare(b.project) || a.service.localeCompare(b.service) || (a.id < b.id ? -1 : 1);
}

export function viewVersion(c: Controller, v: Version): VersionView {
  const p = c.state.projects.get(v.projectId);
  return {
    id: v.id, number: v.number, sha256: v.sha256, size: v.size, createdAt: v.createdAt,
    current: p?.currentVersionId === v.id, routed: p?.routedVersionId === v.id,
    services: Object.fromEntries(Object.entries(v.manifest.services).map(([n, s]) => [n, { command: s.command, instances: s.instances, listens: s.listens, hostnames: s.hostnames }])),
  };
}

export function viewInstance(c: Controller, i: Instance): InstanceView {
  const v = c.state.versions.get(i.versionId);
  const p = c.state.projects.get(i.projectId);
  return {
    id: i.id, project: p?.name ?? '?', service: i.service, version: v?.number ?? null, node: c.state.nodes.get(i.nodeId)?.name ?? i.nodeId,
    desired: i.desired, state: i.current?.state ?? 'pending', pid: i.current?.pid ?? null, host: i.current?.host ?? null, port: i.current?.port ?? null,
    restarts: i.current?.restarts ?? 0, lastExit: i.current?.lastExit ?? null, message: i.current?.message ?? null, createdAt: i.createdAt,
  };
}

export function viewProject(c: Controller, p: Project): ProjectView {
  const ws = c.state.workspaces.get(p.workspaceId)?.name ?? 'default';
  const current = p.currentVersionId ? c.state.versions.get(p.currentVersionId) : undefined;
  const routed = p.routedVersionId ? c.state.versions.get(p.routedVersionId) : undefined;
  const instances = c.state.instancesOf(p.id);
  return {
    id: p.id, name: p.name, workspace: ws, createdAt: p.createdAt, updatedAt: p.updatedAt,
    version: current?.number ?? null, routedVersion: routed?.number ?? null,
    services: Object.entries(current?.manifest.services ?? {}).map(([name, s]) => ({
      name, command: s.command, listens: s.listens,
      hostnames: s.listens ? [...s.hostnames, generatedHostname(name, p.name, ws, c.domain)] : [],
      desired: p.scale[name] ?? s.instances,
      running: instances.filter((i) => i.service === name && i.versionId === current!.id && i.current?.state === 'running').length,
    })),
  };
}
