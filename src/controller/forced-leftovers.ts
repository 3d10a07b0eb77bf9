// Instances stopped or destroyed with --force: the controller stopped waiting for their nodes, so each node is told to
// stop them (desired 'stopped', with their spec) until it reports them gone, even once the project's rows are deleted.
import type { DesiredInstance } from '../core/messages.ts';
import type { Instance } from '../core/model.ts';
import { desiredInstance, type SpecSource } from './jobs/specs.ts';

/** Forced stops remembered per node at most: beyond that the oldest are forgotten (and left to the operator). */
const MAX_PER_NODE = 10_000;

export class ForcedLeftovers {
  /** node id → instance id → what the node is told about it */
  private readonly byNode = new Map<string, Map<string, DesiredInstance>>();

  /** Remembers `instances` as to be stopped, with their specs taken now (their project may be gone by the time). */
  remember(host: SpecSource, instances: Instance[]): void {
    for (const i of instances) {
      const d = desiredInstance(host, i);
      if (!d) continue;
      let node = this.byNode.get(i.nodeId);
      if (!node) this.byNode.set(i.nodeId, (node = new Map()));
      node.set(i.id, { ...d, desired: 'stopped' });
      if (node.size > MAX_PER_NODE) node.delete(node.keys().next().value!);
    }
  }

  /** What the node must still be told to stop, beside its desired state (rows it has are not repeated). */
  for(nodeId: string, known: ReadonlySet<string>): DesiredInstance[] {
    const node = this.byNode.get(nodeId);
    if (!node) return [];
    return [...node.values()].filter((d) => !known.has(d.spec.instanceId));
  }

  /** The node's full report: what it no longer runs is gone for good. */
  nodeReported(nodeId: string, running: ReadonlySet<string>): void {
    const node = this.byNode.get(nodeId);
    if (!node) return;
    for (const id of [...node.keys()]) if (!running.has(id)) node.delete(id);
    if (!node.size) this.byNode.delete(nodeId);
  }

  /** The node's delta: instances it reports removed are gone for good. */
  nodeRemoved(nodeId: string, removed: readonly string[]): void {
    const node = this.byNode.get(nodeId);
    if (!node) return;
    for (const id of removed) node.delete(id);
    if (!node.size) this.byNode.delete(nodeId);
  }

  count(): number {
    let n = 0;
    for (const node of this.byNode.values()) n += node.size;
    return n;
  }
}
