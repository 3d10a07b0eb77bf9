// Which versions of a project routers carry: the routed one, and while a rollout runs both of its versions, so the
// healthy instances of the old and the new version share the traffic (one instance, one share). Pure.
import type { Project } from '../../core/model.ts';

export function routedVersionIds(project: Pick<Project, 'routedVersionId' | 'rollout'>): ReadonlySet<string> {
  const ids = new Set<string>();
  if (project.routedVersionId) ids.add(project.routedVersionId);
  if (project.rollout) {
    ids.add(project.rollout.fromVersionId);
    ids.add(project.rollout.toVersionId);
  }
  return ids;
}
