// The reconciler: compares a project's desired state with what its instances are doing and returns a plan. Pure: no I/O.
import type { Instance, Node, Project, Version } from '../../core/model.ts';
import type { EnjinError } from '../../core/errors.ts';
import { placeInstances, type NodeLoad } from '../schedule/place.ts';
import { VolumeHomes } from '../schedule/volume-homes.ts';

export interface PlannedStart {
  instanceId: string;
  service: string;
  versionId: string;
  nodeId: string;
  /**
   * The instance this start replaces (it failed, or its node is down or draining): an automatic task, which a frozen
   * project does not get (the freeze drops such starts from the plan). Absent: wanted by a deploy or a scale.
   */
  replaces?: string;
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
  /**
   * Instances that could not be placed, and why: a service whose volumes are on a node that is down or draining. A
   * change someone asks for (a deploy, a scale) is refused with the error; the reconcile loop goes on with the rest.
   */
  unplaced: UnplacedInstances[];
}

export interface UnplacedInstances {
  service: string;
  count: number;
  error: EnjinError;
}

export interface ReconcileInput {
  /** null: the project is being destroyed, everything stops */
  project: Project | null;
  projectId: string;
  version: Version | null;
  /** every instance of the project */
  instances: readonly Instance[];
  /** every node (its status and draining flag decide which instances count and where new ones go) */
  nodes: readonly Node[];
  instancesOnNode: (nodeId: string) => readonly Instance[];
  newInstanceId: () => string;
  /** the project's workspace name (volumes are named by it); default 'default' */
  workspace?: string;
}

/** Where an instance is placed, as far as counting it goes: a node that is gone from the state counts as down. */
type Placement = 'ready' | 'down' | 'draining';

function placementOf(nodes: ReadonlyMap<string, Node>, i: Instance): Placement {
  const n = nodes.get(i.nodeId);
  if (!n || n.status !== 'ready') return 'down';
  return n.draining ? 'draining' : 'ready';
}

/**
 * An instance the reconciler can count on: meant to run, not given up on by its node, and on a node that is ready and
 * not draining. The others get replacements; their own stop comes after the replacements are ready (tree order).
 */
function isLive(nodes: ReadonlyMap<string, Node>, i: Instance): boolean {
  return i.desired === 'running' && i.current?.state !== 'failed' && i.current?.state !== 'finished' && placementOf(nodes, i) === 'ready';
}

/**
 * An instance that ended and whose restart policy says that was the end (exit 0 under on-failure): done. While its
 * version is the project's it counts as one of the service's instances, and is neither restarted nor replaced.
 */
function isFinished(i: Instance): boolean {
  return i.desired === 'running' && i.current?.state === 'finished';
}

/** Only nodes that run an agent take instances (a router-only node never does). */
const runsInstances = (n: Node): boolean => !n.roles || n.roles.includes('agent');

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
    unplaced: [],
  };
  const stop = (i: Instance, reason: string) =>
    plan.stops.push({ instanceId: i.id, service: i.service, versionId: i.versionId, nodeId: i.nodeId, reason });
  const nodes = new Map(input.nodes.map((n) => [n.id, n]));
  const nodeName = (id: string) => nodes.get(id)?.name ?? id;
  const homes = target && project ? new VolumeHomes({ workspace: input.workspace ?? 'default', project, manifest: target.manifest, nodes: input.nodes, instances: input.instances }) : null;
  /** An instance on its volumes' node stays there while that node is down or draining: nowhere else has its data. */
  const staysWithItsData = (i: Instance): boolean => {
    const home = homes?.homeOf(i.service);
    return home?.kind === 'unavailable' && home.nodeId === i.nodeId;
  };

  for (const i of input.instances) {
    const placed = placementOf(nodes, i);
    if (!target) stop(i, 'the project is being removed');
    else if (i.desired === 'stopped') {
      // A stop its node could not confirm. A down node cannot: the row stays as a tombstone, and the stop goes out
      // again once the node is back (planning it now would only make an empty tree every tick).
      if (placed !== 'down') stop(i, 'an earlier stop did not finish');
    } else if (i.versionId !== target.id) stop(i, 'replaced by the new version');
    else if (!target.manifest.services[i.service]) stop(i, 'the service is no longer in the manifest');
    else if (isFinished(i)) continue;
    else if (i.current?.state === 'failed') stop(i, `its node gave up on it: ${i.current.message ?? 'failed'}`);
    else if (placed !== 'ready' && staysWithItsData(i)) continue;
    else if (placed === 'down') stop(i, `node ${nodeName(i.nodeId)} is down`);
    else if (placed === 'draining') stop(i, `node ${nodeName(i.nodeId)} is draining`);
  }
  if (!target || !project) return plan;

  // Starts this plan already placed count as load, so the services of one deploy spread over the nodes together.
  const plannedOn = new Map<string, number>();
  const nodeLoad = (service: string): NodeLoad[] =>
    input.nodes.map((n) => {
      const on = input.instancesOnNode(n.id).filter((i) => isLive(nodes, i));
      return {
        nodeId: n.id,
        ready: n.status === 'ready',
        draining: n.draining,
        runsInstances: runsInstances(n),
        name: n.name,
        disk: n.disk ?? null,
        instances: on.length + (plannedOn.get(n.id) ?? 0),
        sameService: on.filter((i) => i.projectId === project.id && i.service === service).length,
      };
    });

  // Services with volumes first: the first start's node runs the release command, which must see the volumes too.
  const services = Object.entries(target.manifest.services).sort(([, a], [, b]) => Number(!!b.volumes) - Number(!!a.volumes));
  for (const [name, spec] of services) {
    const want = project.scale[name] ?? spec.instances;
    const home = homes!.homeOf(name);
    const ofService = input.instances.filter((i) => i.versionId === target.id && i.service === name);
    let live = ofService.filter((i) => isLive(nodes, i) || isFinished(i));
    // What this plan stops of the service for failing or for its node: the starts below replace them.
    const replaced = ofService.filter((i) => i.desired === 'running' && !live.includes(i) && plan.stops.some((s) => s.instanceId === i.id));
    // A replacement goes elsewhere when it can: the node it failed on may be the reason it failed.
    const avoid = new Set(replaced.filter((i) => i.current?.state === 'failed').map((i) => i.nodeId));
    if (home.kind === 'pinned') {
      // Away from its volumes an instance sees none of their data (it ran before the service had them): replaced.
      for (const i of live.filter((x) => x.nodeId !== home.nodeId)) stop(i, `its volumes are on node ${nodeName(home.nodeId)}`);
      live = live.filter((i) => i.nodeId === home.nodeId);
    }
    if (live.length > want) {
      // Scale down: drop the ones not yet serving first, then the newest.
      const ranked = [...live].sort(
        (a, b) => Number(a.current?.state === 'running') - Number(b.current?.state === 'running') || (a.createdAt < b.createdAt ? 1 : -1),
      );
      for (const i of ranked.slice(0, live.length - want)) stop(i, `scaled to ${want}`);
    } else if (live.length < want) {
      if (home.kind === 'unavailable') {
        plan.unplaced.push({ service: name, count: want - live.length, error: home.error });
        continue;
      }
      const nodeIds = placeFor(name, home.kind === 'pinned' ? home.nodeId : null, home.kind === 'new', want - live.length, avoid);
      for (const [k, nodeId] of nodeIds.entries()) {
        plan.starts.push({ instanceId: input.newInstanceId(), service: name, versionId: target.id, nodeId, ...(replaced[k] ? { replaces: replaced[k].id } : {}) });
        plannedOn.set(nodeId, (plannedOn.get(nodeId) ?? 0) + 1);
      }
    }
  }
  return plan;

  /**
   * Nodes for `count` new instances of `service`: anywhere (the scheduler spreads them); or all on `pinned`, the
   * node holding its volumes; or, for volumes not made yet, all on the node the scheduler picks for the first.
   */
  function placeFor(service: string, pinned: string | null, together: boolean, count: number, avoid: ReadonlySet<string>): string[] {
    const loads = nodeLoad(service);
    if (pinned) return placeInstances(loads.filter((l) => l.nodeId === pinned), count);
    if (!together) return placeInstances(loads, count, avoid);
    const [first] = placeInstances(loads, 1, avoid);
    homes!.chose(service, first);
    return Array<string>(count).fill(first);
  }
}
