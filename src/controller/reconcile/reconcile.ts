// The reconciler: compares a project's desired state with what its instances are doing and returns a plan. Pure: no I/O.
import type { Instance, Node, Project, Version } from '../../core/model.ts';
import { placeInstances, type NodeLoad } from '../schedule/place.ts';

export interface PlannedStart {
  instanceId: string;
  service: string;
  versionId: string;
  nodeId: string;
}

export interface PlannedStop {
  instanceId: string;
  service: string;
  versionId: string;
  nodeId: string;
  reason: string;
}

export interface Plan {
  projectId: string;
  /** the version the project should run; null: nothing should run (a destroyed project) */
  targetVersionId: string | null;
  starts: PlannedStart[];
  stops: PlannedStop[];
  /** routers must move to targetVersionId */
  switchRoutes: boolean;
}

export interface ReconcileInput {
  /** null: the project is being destroyed, everything stops */
  project: Project | null;
  projectId: string;
  version: Version | null;
  /** every instance of the project */
  instances: readonly Instance[];
  /** every node, with every instance on it (for spreading) */
  nodes: readonly Node[];
  instancesOnNode: (nodeId: string) => readonly Instance[];
  newInstanceId: () => string;
}

/** An instance the reconciler can count on: meant to run and not given up on by its node. */
function isLive(i: Instance): boolean {
  return i.desired === 'running' && i.current?.state !== 'failed';
}

export function isEmptyPlan(plan: Plan): boolean {
  return plan.starts.length === 0 && plan.stops.length === 0 && !plan.switchRoutes;
}

export function reconcile(input: ReconcileInput): Plan {
  const { project, version } = input;
  const target = project && version ? version : null;
  const plan: Plan = {
    projectId: input.projectId,
    targetVersionId: target?.id ?? null,
    starts: [],
    stops: [],
    switchRoutes: project ? project.routedVersionId !== (target?.id ?? null) : false,
  };
  const stop = (i: Instance, reason: string) =>
    plan.stops.push({ instanceId: i.id, service: i.service, versionId: i.versionId, nodeId: i.nodeId, reason });

  for (const i of input.instances) {
    if (!target) stop(i, 'the project is being removed');
    else if (i.versionId !== target.id) stop(i, 'replaced by the new version');
    else if (!target.manifest.services[i.service]) stop(i, 'the service is no longer in the manifest');
    else if (i.desired === 'running' && i.current?.state === 'failed') stop(i, `its node gave up on it: ${i.current.message ?? 'failed'}`);
    else if (i.desired === 'stopped') stop(i, 'an earlier stop did not finish');
  }
  if (!target || !project) return plan;

  const nodeLoad = (service: string): NodeLoad[] =>
    input.nodes.map((n) => {
      const on = input.instancesOnNode(n.id).filter(isLive);
      return {
        nodeId: n.id,
        ready: n.status === 'ready',
        name: n.name,
        disk: n.disk ?? null,
        instances: on.length,
        sameService: on.filter((i) => i.projectId === project.id && i.service === service).length,
      };
    });

  for (const [name, spec] of Object.entries(target.manifest.services)) {
    const want = project.scale[name] ?? spec.instances;
    const live = input.instances.filter((i) => i.versionId === target.id && i.service === name && isLive(i));
    if (live.length > want) {
      // Scale down: drop the ones not yet serving first, then the newest.
      const ranked = [...live].sort(
        (a, b) => Number(a.current?.state === 'running') - Number(b.current?.state === 'running') || (a.createdAt < b.createdAt ? 1 : -1),
      );
      for (const i of ranked.slice(0, live.length - want)) stop(i, `scaled to ${want}`);
    } else if (live.length < want) {
      for (const nodeId of placeInstances(nodeLoad(name), want - live.length)) {
        plan.starts.push({ instanceId: input.newInstanceId(), service: name, versionId: target.id, nodeId });
      }
    }
  }
  return plan;
}
