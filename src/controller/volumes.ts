// Volumes as the controller sees them: what the nodes hold (listed with sizes for `enjin volumes`), and removing a
// project's volumes when asked (`enjin destroy --volumes`). The directories themselves are the agents' business.
import type { Bus } from '../bus/bus.ts';
import { EnjinError } from '../core/errors.ts';
import { subjects, type AgentReply } from '../core/messages.ts';
import type { Manifest, Node, NodeVolume, Project } from '../core/model.ts';
import { VolumeHomes } from './schedule/volume-homes.ts';
import { servicesUsing, volumeEnvName } from '../core/volumes.ts';
import { componentLogger } from '../log/logger.ts';
import type { VolumeView } from '../core/api.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('controller');

/** How long a listing waits for a node to measure its volumes before showing what it last reported. */
const MEASURE_TIMEOUT_MS = 10_000;
const DROP_TIMEOUT_MS = 60_000;


const runsAgent = (n: Node) => !n.roles || n.roles.includes('agent');

/**
 * Every volume the nodes hold. Ready nodes are asked to measure now (`measure`); a node that does not answer in time,
 * or is down, is shown with what it last reported.
 */
export async function listVolumes(state: ControllerState, bus: Bus, opts: { project?: string; measure?: boolean } = {}): Promise<VolumeView[]> {
  const nodes = [...state.nodes.values()].filter(runsAgent);
  const fresh = await Promise.all(nodes.map(async (n): Promise<NodeVolume[] | null> => {
    if (!opts.measure || n.status !== 'ready') return null;
    try {
      const r = await bus.request<AgentReply>(subjects.agentRpc(n.id), { op: 'volumes' }, { timeoutMs: MEASURE_TIMEOUT_MS });
      return r.op === 'volumes' ? r.volumes : null;
    } catch (err) {
      log.warn({ err, nodeId: n.id }, 'a node did not measure its volumes; showing what it last reported');
      return null;
    }
  }));
  const out: VolumeView[] = [];
  nodes.forEach((n, k) => {
    // A reply is shown, not kept: the node's own report (which carries the new sizes) is the one writer of its state.
    const held = fresh[k] ?? n.volumes ?? [];
    for (const v of held) {
      if (opts.project && v.project !== opts.project) continue;
      const ws = state.workspaceByName(v.workspace);
      const project = ws ? state.projectByName(ws.id, v.project) : undefined;
      const version = project?.currentVersionId ? state.versions.get(project.currentVersionId) : undefined;
      const services = version ? servicesUsing(version.manifest, v.name) : [];
      const path = services.length ? version!.manifest.services[services[0]].volumes![v.name] : null;
      out.push({
        workspace: v.workspace, project: v.project, name: v.name, services, path, env: volumeEnvName(v.name),
        node: { id: n.id, name: n.name, state: n.status !== 'ready' ? 'down' : n.draining ? 'draining' : 'ready' },
        dir: v.dir, sizeBytes: v.sizeBytes, measuredAt: v.measuredAt,
      });
    }
  });
  return out.sort((a, b) => a.project.localeCompare(b.project) || a.name.localeCompare(b.name) || a.node.name.localeCompare(b.node.name));
}

/**
 * Removes every volume of a project on every node that runs an agent. A node that is down and holds (or may hold)
 * one makes it fail, so nothing is said to be gone that is not: bring the node back, or remove it.
 */
export async function dropProjectVolumes(state: ControllerState, bus: Bus, workspace: string, project: string, log: (line: string) => void): Promise<NodeVolume[]> {
  const nodes = [...state.nodes.values()].filter(runsAgent);
  const holds = (n: Node) => n.volumes?.some((v) => v.workspace === workspace && v.project === project) ?? false;
  const downHolders = nodes.filter((n) => n.status !== 'ready' && holds(n));
  if (downHolders.length) {
    const names = downHolders.map((n) => n.name).join(', ');
    throw new EnjinError('volume_node_unavailable', `volumes of ${project} are on ${names}, which ${downHolders.length > 1 ? 'are' : 'is'} down: nothing was removed; start the agent there again and retry, or destroy without --volumes (the data stays on the node)`, { status: 503 });
  }
  const removed: NodeVolume[] = [];
  await Promise.all(nodes.filter((n) => n.status === 'ready').map(async (n) => {
    const r = await bus.request<AgentReply>(subjects.agentRpc(n.id), { op: 'drop-volumes', workspace, project }, { timeoutMs: DROP_TIMEOUT_MS });
    if (r.op !== 'drop-volumes') return;
    for (const v of r.removed) {
      log(`removed volume ${v.name} of ${project} on ${n.name} (${v.dir})`);
      removed.push(v);
    }
  }));
  if (!removed.length) log(`no node held a volume of ${project}`);
  return removed;
}

/**
 * The node a one-off run of `service` must go to: the one holding its volumes; null when it has none (or none made
 * yet). Throws when that node is down or draining: the run would not see the data.
 */
export function volumeNodeFor(state: ControllerState, project: Project, manifest: Manifest, service: string): string | null {
  const workspace = state.workspaces.get(project.workspaceId)?.name ?? 'default';
  const home = new VolumeHomes({ workspace, project, manifest, nodes: [...state.nodes.values()], instances: state.instancesOf(project.id) }).homeOf(service);
  if (home.kind === 'unavailable') throw home.error;
  return home.kind === 'pinned' ? home.nodeId : null;
}

/** What a one-off run's spec carries of the service's volumes. */
export function runVolumes(manifest: Manifest, service: string, workspace: string): { volumes?: Record<string, string>; workspace?: string } {
  const volumes = manifest.services[service]?.volumes;
  return volumes && Object.keys(volumes).length ? { volumes, workspace } : {};
}

/** The volumes of a project the nodes hold, for telling the user what `destroy` kept. */
export function heldVolumes(state: ControllerState, workspace: string, project: string): Array<NodeVolume & { node: string }> {
  return [...state.nodes.values()].flatMap((n) => (n.volumes ?? []).filter((v) => v.workspace === workspace && v.project === project).map((v) => ({ ...v, node: n.name })));
}
