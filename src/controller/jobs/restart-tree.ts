// `enjin restart`: a rolling restart as one job tree. Each instance gets a replacement of the same version on the same
// node; the old one stops (routers drain it first) only once its replacement is ready, and the next instance's turn
// comes only after that stop: one at a time, so the service never has fewer ready instances than it had.
import type { Instance, Project } from '../../core/model.ts';
import type { PlannedStart, PlannedStop } from '../reconcile/reconcile.ts';
import type { JobSpec } from './engine.ts';
import type { ActionHost } from './actions.ts';

export function restartTree(host: ActionHost, project: Project, instances: readonly Instance[], newInstanceId: () => string, title: string): JobSpec {
  const ws = host.state.workspaces.get(project.workspaceId)?.name ?? 'default';
  const nodeName = (id: string) => host.state.nodes.get(id)?.name ?? id;
  const services = [...new Set(instances.map((i) => i.service))];
  const versionTag = (versionId: string) => {
    const v = host.state.versions.get(versionId);
    return v ? `v${v.number}` : undefined;
  };
  // Children run before their parent: the first instance's steps are the innermost.
  let chain: JobSpec[] = [];
  for (const i of instances) {
    const start: PlannedStart = { instanceId: newInstanceId(), service: i.service, versionId: i.versionId, nodeId: i.nodeId };
    const stop: PlannedStop = { instanceId: i.id, service: i.service, versionId: i.versionId, nodeId: i.nodeId, reason: 'restarted: its replacement is ready' };
    const tags = { version: versionTag(i.versionId), node: i.nodeId, service: i.service };
    const startJob: JobSpec = {
      kind: 'start',
      title: `start ${i.service} on ${nodeName(i.nodeId)} (replaces ${i.id})`,
      tags,
      params: { projectId: project.id, starts: [start] },
      children: [{ kind: 'prepare', title: `prepare ${project.name} ${tags.version ?? ''} on ${nodeName(i.nodeId)}`.replace('  ', ' '), tags: { version: tags.version, node: i.nodeId }, params: { projectId: project.id, versionId: i.versionId, nodeId: i.nodeId } }],
    };
    // The previous instance's stop is a child of this start: this one starts only once that one is fully replaced.
    if (chain.length) startJob.children = [...(startJob.children ?? []), ...chain];
    chain = [{ kind: 'stop', title: `stop ${i.service} ${i.id}`, tags, params: { projectId: project.id, stops: [stop] }, children: [startJob] }];
  }
  return {
    kind: 'restart',
    title,
    tags: { workspace: ws, project: project.name, service: services.length === 1 ? services[0] : undefined },
    params: { projectId: project.id, targetVersionId: project.currentVersionId },
    children: chain,
  };
}
