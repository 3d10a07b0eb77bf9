// Which versions of a project routers carry: the routed one, and while a rollout runs both of its versions, so the
// healthy instances of the old and the new version share the traffic. Canaries waiting for promotion each take the
// share of one old instance (see routes/build.ts). Pure.
import type { Project } from '../../core/model.ts';
import type { RoutedVersion } from '../routes/build.ts';

/** The routed version first (its manifest names the services), then the rollout's, the new one as canaries while paused. */
export function rolloutRoutedVersions(project: Pick<Project, 'routedVersionId' | 'rollout'>): RoutedVersion[] {
  const out: RoutedVersion[] = [];
  const add = (r: RoutedVersion) => {
    if (!out.some((o) => o.versionId === r.versionId)) out.push(r);
  };
  if (project.routedVersionId) add({ versionId: project.routedVersionId });
  const r = project.rollout;
  if (r) {
    add({ versionId: r.fromVersionId });
    add({ versionId: r.toVersionId, ...(r.phase === 'paused' && !r.promoted ? { canary: true } : {}) });
  }
  return out;
}
