// `enjin stop` and `enjin start`: what the project's desired scale becomes, and what a stop plans (pure).
import { EnjinError } from '../core/errors.ts';
import type { Instance, Project, Version } from '../core/model.ts';
import type { Plan } from './reconcile/reconcile.ts';

/** The services a stop or start is about, checked against the version: all of them when `only` is null. */
export function servicesOf(project: Project, version: Version | undefined, only: string | null): string[] {
  if (!version) throw new EnjinError('not_deployed', `${project.name} has no version yet; deploy it first`, { status: 409 });
  const all = Object.keys(version.manifest.services);
  if (only === null) return all;
  if (!Object.hasOwn(version.manifest.services, only)) {
    throw new EnjinError('unknown_service', `${project.name} has no service "${only}"; it has ${all.join(', ')}`, { status: 404 });
  }
  return [only];
}

/**
 * The project with `services` scaled to 0 and their scale put aside for `start`. A service stopped already keeps the
 * scale put aside the first time (stopping twice must not forget the count to bring back).
 */
export function stoppedProject(project: Project, version: Version, services: string[]): Project {
  const scale = { ...project.scale };
  const stoppedScale = { ...project.stoppedScale };
  for (const s of services) {
    const now = (Object.hasOwn(scale, s) ? scale[s] : undefined) ?? version.manifest.services[s].instances;
    if (now > 0 || !Object.hasOwn(stoppedScale, s)) stoppedScale[s] = now;
    scale[s] = 0;
  }
  return { ...project, scale, stoppedScale };
}

/** The project with the scale `stop` put aside brought back for `services`; refused when none of them is stopped. */
export function startedProject(project: Project, services: string[]): Project {
  const aside = project.stoppedScale ?? {};
  const back = services.filter((s) => Object.hasOwn(aside, s));
  if (!back.length) {
    throw new EnjinError('not_stopped', `${services.join(', ')} of ${project.name} ${services.length === 1 ? 'is' : 'are'} not stopped; \`enjin stop ${project.name}\` stops a project, \`enjin scale\` changes a running one`, { status: 409 });
  }
  const scale = { ...project.scale };
  const stoppedScale = { ...aside };
  for (const s of back) {
    scale[s] = stoppedScale[s];
    delete stoppedScale[s];
  }
  const next: Project = { ...project, scale, stoppedScale };
  if (!Object.keys(stoppedScale).length) delete next.stoppedScale;
  return next;
}

/**
 * What a stop does: stop every instance of the services that should run, nothing else. Taken from the instances
 * rather than a whole reconcile, so a stop of one service never starts or stops another's. `force`: also those
 * already being stopped (an earlier stop still waiting on their node), so none of them is waited on any more.
 */
export function stopPlan(project: Project, instances: Instance[], services: string[], force = false): Plan {
  const stops = instances
    .filter((i) => (i.desired === 'running' || force) && services.includes(i.service))
    .map((i) => ({ instanceId: i.id, service: i.service, versionId: i.versionId, nodeId: i.nodeId, reason: 'the project is stopped' }));
  return { projectId: project.id, targetVersionId: project.currentVersionId, starts: [], stops, switchRoutes: false, unplaced: [] };
}
