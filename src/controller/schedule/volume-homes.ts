// Where a service with volumes must run: on the node that holds its volumes. A volume is a directory on one node, so
// moving the service's instances elsewhere would leave its data behind; a service is never moved silently. Pure.
import { EnjinError } from '../../core/errors.ts';
import type { Instance, Manifest, Node, Project } from '../../core/model.ts';
import { servicesUsing } from '../../core/volumes.ts';

/**
 * - free: the service has no volumes, the scheduler places it as it likes
 * - new: none of its volumes exists yet: the scheduler chooses a node for the first instance, the rest follow it
 * - pinned: its volumes are on `nodeId`, which can take instances
 * - unavailable: its volumes are on a node that cannot take instances now (`nodeId`, when known): nothing is placed
 */
export type VolumeHome =
  | { kind: 'free' }
  | { kind: 'new' }
  | { kind: 'pinned'; nodeId: string }
  | { kind: 'unavailable'; nodeId: string | null; error: EnjinError };

export interface VolumeHomesInput {
  /** the project's workspace name: volumes are named by workspace and project names */
  workspace: string;
  project: Project;
  /** the manifest of the version being placed */
  manifest: Manifest;
  nodes: readonly Node[];
  /** every instance of the project (any version, tombstones included) */
  instances: readonly Instance[];
}

export class VolumeHomes {
  /** volume name → node chosen for it during this plan (its first placement) */
  private readonly chosen = new Map<string, string>();
  private readonly nodes: Map<string, Node>;

  constructor(private readonly input: VolumeHomesInput) {
    this.nodes = new Map(input.nodes.map((n) => [n.id, n]));
  }

  homeOf(service: string): VolumeHome {
    const names = Object.keys(this.input.manifest.services[service]?.volumes ?? {});
    if (names.length === 0) return { kind: 'free' };
    const holders = new Map<string, string[]>();
    const hold = (nodeId: string, name: string) => holders.set(nodeId, [...new Set([...(holders.get(nodeId) ?? []), name])]);
    for (const name of names) {
      const reported = this.reportedHolders(name);
      const known = reported.length ? reported : this.chosen.has(name) ? [this.chosen.get(name)!] : this.holderByInstances(name);
      for (const nodeId of known) hold(nodeId, name);
    }
    const project = this.input.project.name;
    if (holders.size === 0) return { kind: 'new' };
    if (holders.size > 1) {
      const where = [...holders].map(([id, vs]) => `${vs.join(', ')} on ${this.nameOf(id)}`).join('; ');
      return {
        kind: 'unavailable', nodeId: null,
        error: new EnjinError('volumes_split', `${project}/${service} uses volumes held by different nodes (${where}); one instance cannot reach them all: move the data of one volume to the other node by hand, then remove its directory`, { status: 409 }),
      };
    }
    const [[nodeId, held]] = [...holders];
    const node = this.nodes.get(nodeId);
    const what = `${project}/${service}: its volume${held.length > 1 ? 's' : ''} ${held.join(', ')} ${held.length > 1 ? 'are' : 'is'} on node ${this.nameOf(nodeId)}`;
    if (!node || node.status !== 'ready') {
      return {
        kind: 'unavailable', nodeId,
        error: new EnjinError('volume_node_unavailable', `${what}, which is down; its instances wait for that node rather than start elsewhere without their data: start the agent on ${this.nameOf(nodeId)} again, or, to give up the data, remove the node with \`enjin nodes rm ${this.nameOf(nodeId)}\``, { status: 503 }),
      };
    }
    if (node.draining) {
      return {
        kind: 'unavailable', nodeId,
        error: new EnjinError('volume_node_unavailable', `${what}, which is draining; its instances stay there (their data cannot move with them): activate it with \`enjin nodes activate ${node.name}\``, { status: 503 }),
      };
    }
    return { kind: 'pinned', nodeId };
  }

  /** The first instance of a service with new volumes went to `nodeId`: its other instances and services follow. */
  chose(service: string, nodeId: string): void {
    for (const name of Object.keys(this.input.manifest.services[service]?.volumes ?? {})) if (!this.chosen.has(name)) this.chosen.set(name, nodeId);
  }

  /** Nodes that report holding the project's volume `name`. */
  private reportedHolders(name: string): string[] {
    const { workspace, project } = this.input;
    return this.input.nodes.filter((n) => n.volumes?.some((v) => v.workspace === workspace && v.project === project.name && v.name === name)).map((n) => n.id);
  }

  /**
   * Where the volume is when no node has reported it (a controller restarted while its node is down, or a start not
   * reported yet): the node its services' instances are placed on, the one with the most of them.
   */
  private holderByInstances(name: string): string[] {
    const users = new Set(servicesUsing(this.input.manifest, name));
    const counts = new Map<string, number>();
    for (const i of this.input.instances) {
      if (users.has(i.service) && i.desired === 'running') counts.set(i.nodeId, (counts.get(i.nodeId) ?? 0) + 1);
    }
    const best = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    return best ? [best[0]] : [];
  }

  private nameOf(nodeId: string): string {
    return this.nodes.get(nodeId)?.name ?? nodeId;
  }
}
