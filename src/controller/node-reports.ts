// Current state from nodes: applies each node's reported instances to the controller's memory, the one writer of
// current state, and deals with instances a node runs that nobody asked for.
import type { Bus } from '../bus/bus.ts';
import { subjects, type InstanceReport, type NodeStateUpdate, type Notification } from '../core/messages.ts';
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
}

export class NodeReportIntake {
  constructor(private readonly h: NodeReportHost) {}

  /** A node's update: `full` (seq 0) replaces everything the controller knew to run there. */
  apply(update: NodeStateUpdate, full: boolean): void {
    const now = new Date().toISOString();
    const info = update.node;
    const existing = this.h.state.nodes.get(info.nodeId);
    const node: Node = existing ?? { id: info.nodeId, name: info.name, address: info.address, labels: info.labels, status: 'ready', lastSeenAt: now, createdAt: now };
    const changedNode = !existing || existing.status !== 'ready' || existing.address !== info.address || existing.name !== info.name;
    Object.assign(node, { name: info.name, address: info.address, labels: info.labels, status: 'ready', lastSeenAt: now, disk: info.disk ?? null });
    this.h.state.nodes.set(node.id, node);
    if (changedNode) void this.h.store.saveNode(node).catch((err: unknown) => log.warn({ err, nodeId: node.id }, 'could not save the node; memory keeps it'));

    const reported = new Set<string>();
    for (const r of update.instances) {
      reported.add(r.instanceId);
      this.applyInstanceReport(r);
    }
    for (const id of update.removed) this.markLost(id, info.nodeId, 'the node no longer runs it');
    if (full) {
      for (const i of this.h.state.instancesOnNode(info.nodeId)) {
        if (!reported.has(i.id) && i.nodeId === info.nodeId && i.current) this.markLost(i.id, info.nodeId, 'the node restarted without it');
      }
    }
    this.h.routesChanged();
  }

  private applyInstanceReport(r: InstanceReport): void {
    const i = this.h.state.instances.get(r.instanceId);
    if (!i) {
      // The node runs something the controller never asked for, or no longer wants (its project was destroyed while
      // the node was away): desired state is the controller's, so it goes.
      if (r.desired === 'running' && r.current.nodeId) {
        this.h.notify({ kind: 'info', at: new Date().toISOString(), nodeId: r.current.nodeId, instanceId: r.instanceId, message: `stopping ${r.project}/${r.service} ${r.instanceId}: not in the desired state` });
        void this.h.bus.request(subjects.agentRpc(r.current.nodeId), { op: 'stop', instanceId: r.instanceId }, { timeoutMs: 330_000 }).catch((err: unknown) => log.warn({ err, nodeId: r.current.nodeId, instanceId: r.instanceId }, 'stopping an unwanted instance failed; its next report tries again'));
      }
      return;
    }
    const before = JSON.stringify(i.current);
    i.current = r.current;
    this.h.state.putInstance(i);
    if (JSON.stringify(i.current) !== before) this.h.persistInstance(i);
  }

  private markLost(id: string, nodeId: string, message: string): void {
    const i = this.h.state.instances.get(id);
    if (!i || i.desired !== 'running' || (i.current && i.current.nodeId !== nodeId)) return;
    // Only a start job creates instances before their first report; those have current === null and are left alone.
    if (!i.current) return;
    i.current = { ...i.current, state: 'failed', message, reportedAt: new Date().toISOString() };
    this.h.state.putInstance(i);
    this.h.persistInstance(i);
  }
}
