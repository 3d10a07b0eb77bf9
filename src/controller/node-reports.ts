// Current state from nodes: applies each node's reported instances to the controller's memory, the one writer of
// current state, and deals with instances a node runs that the controller does not know: never by stopping them.
import type { Bus } from '../bus/bus.ts';
import type { InstanceReport, NodeStateUpdate, Notification } from '../core/messages.ts';
import type { Instance, Node } from '../core/model.ts';
import type { Store } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('controller');

export interface NodeReportHost {
  state: ControllerState;
  store: Store;
  bus: Bus;
  notify(n: Notification): void;
  persistInstance(i: Instance): void;
  /** an update changed what routers should know */
  routesChanged(): void;
  /** the controller's clock (ms), so node-down timing can be tested; default Date.now */
  now?: () => number;
  /**
   * Whether this controller decides about instances it does not know (default: yes). A follower says no: the leader
   * adopts or lists them, and the follower's memory follows the store.
   */
  decidesUnknown?: () => boolean;
}

export class NodeReportIntake {
  constructor(private readonly h: NodeReportHost) {}

  /** A node's update: `full` (seq 0) replaces everything the controller knew to run there. */
  apply(update: NodeStateUpdate, full: boolean): void {
    const now = new Date((this.h.now ?? Date.now)()).toISOString();
    const info = update.node;
    const existing = this.h.state.nodes.get(info.nodeId);
    if (existing && existing.status !== 'ready') {
      this.h.notify({ kind: 'info', at: now, nodeId: existing.id, message: `node ${info.name} reports again and is ready` });
    }
    const node: Node = existing ?? { id: info.nodeId, name: info.name, address: info.address, labels: info.labels, status: 'ready', draining: false, roles: ['agent'], compartment: null, publicKey: null, lastSeenAt: now, createdAt: now };
    const changedNode = !existing || existing.status !== 'ready' || existing.address !== info.address || existing.name !== info.name;
    Object.assign(node, { name: info.name, address: info.address, labels: info.labels, status: 'ready', lastSeenAt: now, disk: info.disk ?? null, capacity: info.capacity ?? node.capacity ?? null, volumes: info.volumes ?? node.volumes ?? null });
    this.h.state.nodes.set(node.id, node);
    if (changedNode) void this.h.store.saveNode(node).catch((err: unknown) => log.warn({ err, nodeId: node.id }, 'could not save the node; memory keeps it'));

    const reported = new Set<string>();
    for (const r of update.instances) {
      reported.add(r.instanceId);
      this.applyInstanceReport(r, info.nodeId);
    }
    for (const id of update.removed) this.markLost(id, info.nodeId, 'the node no longer runs it');
    // Unmanaged instances are listed only while their node reports them.
    for (const [id, u] of this.h.state.unmanaged) {
      if (u.nodeId === info.nodeId && (update.removed.includes(id) || (full && !reported.has(id)))) this.h.state.unmanaged.delete(id);
    }
    if (full) {
      for (const i of this.h.state.instancesOnNode(info.nodeId)) {
        if (!reported.has(i.id) && i.nodeId === info.nodeId) this.markLost(i.id, info.nodeId, 'the node restarted without it');
      }
    }
    this.h.routesChanged();
  }

  private applyInstanceReport(r: InstanceReport, nodeId: string): void {
    const i = this.h.state.instances.get(r.instanceId);
    if (!i) return this.unknownInstance(r, nodeId);
    const before = JSON.stringify(i.current);
    i.current = r.current;
    this.h.state.putInstance(i);
    if (JSON.stringify(i.current) !== before) this.h.persistInstance(i);
  }

  /**
   * The node runs something the controller has no row for: a controller on an empty or restored store, a project
   * destroyed while the node was away, a start whose row was lost. Its memory being short is never a reason to stop
   * work: an instance of a known project and version is adopted (the reconciler then trims any excess with an
   * explicit stop), anything else keeps running and is listed as unmanaged for the operator.
   */
  private unknownInstance(r: InstanceReport, nodeId: string): void {
    if (this.h.decidesUnknown && !this.h.decidesUnknown()) return;
    if (r.desired !== 'running') {
      // The node is stopping it on an earlier word: it is on its way out, nothing to keep or adopt.
      this.h.state.unmanaged.delete(r.instanceId);
      return;
    }
    const at = new Date((this.h.now ?? Date.now)()).toISOString();
    const version = this.h.state.versions.get(r.versionId);
    const project = version ? this.h.state.projects.get(version.projectId) : undefined;
    if (version && project && project.name === r.project && Object.hasOwn(version.manifest.services, r.service)) {
      const adopted: Instance = {
        id: r.instanceId, workspaceId: project.workspaceId, projectId: project.id, service: r.service, versionId: version.id,
        nodeId, desired: 'running', createdAt: at, current: r.current,
      };
      this.h.state.unmanaged.delete(r.instanceId);
      this.h.state.putInstance(adopted);
      this.h.persistInstance(adopted);
      const node = this.h.state.nodes.get(nodeId)?.name ?? nodeId;
      log.info({ instanceId: r.instanceId, nodeId, project: project.name, service: r.service }, 'adopted an instance the controller had no row for');
      this.h.notify({ kind: 'info', at, nodeId, instanceId: r.instanceId, project: project.name, service: r.service, message: `adopted ${project.name}/${r.service} ${r.instanceId} (v${version.number}) running on node ${node}: the controller had no record of it; any excess is stopped by the reconciler` });
      return;
    }
    const known = this.h.state.unmanaged.has(r.instanceId);
    this.h.state.unmanaged.set(r.instanceId, { nodeId, report: r });
    if (known) return;
    const node = this.h.state.nodes.get(nodeId)?.name ?? nodeId;
    log.warn({ instanceId: r.instanceId, nodeId, project: r.project, versionId: r.versionId }, 'a node runs an instance of a project or version the controller does not know; left running');
    this.h.notify({
      kind: 'info', at, nodeId, instanceId: r.instanceId, project: r.project, service: r.service,
      message: `node ${node} runs ${r.project}/${r.service} ${r.instanceId} (version ${r.versionId}), which this controller does not know; it is left running and listed as unmanaged in \`enjin nodes\` — deploy that project again to manage it, or stop it on the node`,
    });
  }

  private markLost(id: string, nodeId: string, message: string): void {
    const i = this.h.state.instances.get(id);
    if (i?.desired === 'stopped' && i.nodeId === nodeId) {
      // Its node confirms a stop it was told to do: the tombstone has served, and the stop job waiting on it ends.
      this.h.state.removeInstance(id);
      void this.h.store.deleteInstance(id).catch((err: unknown) => log.warn({ err, instanceId: id }, 'could not delete the stopped instance; it is gone from memory and a restarted controller re-learns it from the node'));
      return;
    }
    if (!i || i.desired !== 'running' || (i.current && i.current.nodeId !== nodeId)) return;
    // Only a start job creates instances before their first report; those have current === null and are left alone.
    if (!i.current) return;
    i.current = { ...i.current, state: 'failed', message, reportedAt: new Date().toISOString() };
    this.h.state.putInstance(i);
    this.h.persistInstance(i);
  }
}
