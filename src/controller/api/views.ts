// The API's views of entities: what the controller's state looks like to a client (shapes from core/api.ts).
import type { Instance, InstanceHealth, Job, Node, Project, Version } from '../../core/model.ts';
import type { InstanceView, NodeView, ProjectView, QueuedJobView, UnmanagedInstanceView, VersionView } from '../../core/api.ts';
import type { Controller } from '../controller.ts';
import { nodeState } from '../nodes.ts';
import type { UnmanagedInstance } from '../state.ts';
import { generatedHostname, projectHostname } from '../routes/build.ts';

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
    id: i.id, project: p?.name ?? '?', service: i.service, version: v?.number ?? null, node: i.nodeId, nodeName: c.state.nodes.get(i.nodeId)?.name ?? i.nodeId,
    desired: i.desired, state: i.current?.state ?? 'pending', pid: i.current?.pid ?? null, host: i.current?.host ?? null, port: i.current?.port ?? null,
    restarts: i.current?.restarts ?? 0, lastExit: i.current?.lastExit ?? null, message: i.current?.message ?? null,
    health: healthOfInstance(i), probe: i.current?.probe ?? null, createdAt: i.createdAt,
  };
}

/** Health speaks of a process: an instance without one (backing off, finished, failed, not reported) has 'none'. */
function healthOfInstance(i: Instance): InstanceHealth {
  const c = i.current;
  return c && (c.state === 'running' || c.state === 'starting') ? c.health ?? 'none' : 'none';
}

/**
 * Where a browser reaches `hostname` through the router: a wildcard becomes `any.`, and the router's port is part of
 * the URL unless it is the scheme's own (80; 443 is taken as TLS ended in front of the router).
 */
export function hostnameUrl(hostname: string, routerPort: number | null): string {
  const host = hostname.replace(/^\*\./, 'any.');
  if (routerPort === 443) return `https://${host}`;
  return routerPort === null || routerPort === 80 ? `http://${host}` : `http://${host}:${routerPort}`;
}

export function viewProject(c: Controller, p: Project): ProjectView {
  const ws = c.state.workspaces.get(p.workspaceId)?.name ?? 'default';
  const current = p.currentVersionId ? c.state.versions.get(p.currentVersionId) : undefined;
  const routed = p.routedVersionId ? c.state.versions.get(p.routedVersionId) : undefined;
  const instances = c.state.instancesOf(p.id);
  return {
    id: p.id, name: p.name, workspace: ws, createdAt: p.createdAt, updatedAt: p.updatedAt,
    version: current?.number ?? null, routedVersion: routed?.number ?? null,
    services: Object.entries(current?.manifest.services ?? {}).map(([name, s]) => {
      // A Procfile or builder project's web answers on PROJECT.DOMAIN too: its first URL.
      const projectWide = name === 'web' && current?.manifest.processesFrom ? [projectHostname(p.name, ws, c.domain)] : [];
      const hostnames = s.listens ? [...projectWide, ...s.hostnames, generatedHostname(name, p.name, ws, c.domain)] : [];
      return {
        name, command: s.command, listens: s.listens, hostnames,
        urls: hostnames.map((h) => hostnameUrl(h, c.routerPort)),
        desired: p.scale[name] ?? s.instances,
        // Serving ones: a stop in progress, or an instance on a down node (left until its node confirms), does not count.
        running: instances.filter((i) => i.service === name && i.versionId === current!.id && i.desired === 'running' && i.current?.state === 'running' && c.state.nodes.get(i.nodeId)?.status === 'ready').length,
        ...(p.stoppedScale && Object.hasOwn(p.stoppedScale, name) ? { stopped: true } : {}),
      };
    }),
    frozen: p.frozen === true,
  };
}

export function viewNode(c: Controller, n: Node): NodeView {
  let unmanaged = 0;
  for (const u of c.state.unmanaged.values()) if (u.nodeId === n.id) unmanaged++;
  return {
    id: n.id, name: n.name, state: nodeState(n), address: n.address, labels: n.labels, compartment: n.compartment, roles: n.roles,
    capacity: n.capacity ?? null, disk: n.disk ?? null,
    instances: c.state.instancesOnNode(n.id).filter((i) => i.nodeId === n.id && i.desired === 'running').length,
    unmanaged, lastSeenAt: n.lastSeenAt, createdAt: n.createdAt,
  };
}

export function viewUnmanaged(id: string, u: UnmanagedInstance): UnmanagedInstanceView {
  const r = u.report;
  return { id, project: r.project, service: r.service, versionId: r.versionId, state: r.current.state, pid: r.current.pid, host: r.current.host, port: r.current.port, reportedAt: r.current.reportedAt };
}

/** A root as answers show it: a queued one with its place in its project's queue. */
export function viewQueued<J extends Job | null>(c: Controller, job: J): J extends Job ? QueuedJobView : null {
  if (!job) return null as never;
  const place = job.state === 'queued' ? c.changes.queuePlace(job.id) : null;
  return (place ? { ...job, queue: place } : job) as never;
}
