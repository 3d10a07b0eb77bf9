// Whether a release rolls out health-gated (some service has `update:` parallelism or canaries and the previous
// version runs), and the job tree that does it: the release's root (deploy, rollback, config) over one rollout job.
import type { Instance, Project, Version } from '../../core/model.ts';
import { updateOf } from '../../core/service-policies.ts';
import type { JobSpec } from '../jobs/engine.ts';
import type { ControllerState } from '../state.ts';

/**
 * A rollout needs an old version that runs: a first deploy (or one over nothing running) has nothing to keep serving
 * and goes the plain way, as does a release whose services all keep the default update (all at once).
 */
export function wantsRollout(state: ControllerState, project: Project, to: Version): boolean {
  const from = project.routedVersionId ? state.versions.get(project.routedVersionId) : undefined;
  if (!from || from.id === to.id) return false;
  const running = state.instancesOf(project.id).some((i: Instance) => i.versionId === from.id && i.desired === 'running');
  if (!running) return false;
  return Object.values(to.manifest.services).some((s) => {
    const u = updateOf(s);
    return u.parallelism > 0 || u.canary > 0;
  });
}

export function rolloutTree(state: ControllerState, project: Project, to: Version, kind: string, title: string, params: Record<string, unknown>): JobSpec {
  const from = state.versions.get(project.routedVersionId!)!;
  const ws = state.workspaces.get(project.workspaceId)?.name ?? 'default';
  const how = Object.entries(to.manifest.services).map(([name, s]) => {
    const u = updateOf(s);
    const parts = [u.canary ? `${u.canary} canar${u.canary === 1 ? 'y' : 'ies'}` : '', u.parallelism ? `${u.parallelism} at a time` : 'all at once'].filter(Boolean);
    return `${name}: ${parts.join(', ')}`;
  }).join('; ');
  return {
    kind,
    title,
    tags: { workspace: ws, project: project.name, version: `v${to.number}` },
    params: { ...params, projectId: project.id, targetVersionId: to.id, rollout: true },
    children: [{
      kind: 'rollout',
      title: `roll v${to.number} out over v${from.number} (${how})`,
      tags: { version: `v${to.number}` },
      params: { projectId: project.id, fromVersionId: from.id, toVersionId: to.id, release: kind === 'deploy' },
    }],
  };
}
