// The scheduler: decides which node each new instance goes to. A pure function of a state snapshot, no I/O.
import { EnjinError, nodeDiskFull } from '../../core/errors.ts';
import type { NodeDisk } from '../../core/model.ts';

export interface NodeLoad {
  nodeId: string;
  /** the node reports (it is not down) */
  ready: boolean;
  /** the operator is emptying it: it takes nothing new */
  draining?: boolean;
  /** it runs an agent; a router-only node never takes instances. Absent: it does */
  runsInstances?: boolean;
  /** instances of any service currently placed on the node (desired running) */
  instances: number;
  /** instances of the service being placed that are already on the node */
  sameService: number;
  name?: string;
  /** as the node last reported it; a node whose disk is low gets nothing new */
  disk?: NodeDisk | null;
}

/**
 * Places `count` instances of one service over the nodes that can take work (ready, not draining, running an agent,
 * disk not low), spreading them: each goes to the node with the fewest instances of that service (so no node gets a
 * second one while another has none), then the fewest instances overall, then the lowest id (deterministic).
 * `avoid`: nodes to keep away from while another can take work (where the instances being replaced failed); when
 * none other can, they are used all the same.
 */
export function placeInstances(nodes: readonly NodeLoad[], count: number, avoid: ReadonlySet<string> = new Set()): string[] {
  if (count <= 0) return [];
  const agents = nodes.filter((n) => n.runsInstances !== false);
  const up = agents.filter((n) => n.ready);
  if (up.length === 0) {
    throw new EnjinError('no_ready_nodes', 'no node is ready to run instances; check `enjin nodes` and that the agent is running', { status: 503 });
  }
  const open = up.filter((n) => !n.draining);
  if (open.length === 0) {
    const names = up.map((n) => n.name ?? n.nodeId).join(', ');
    throw new EnjinError('no_ready_nodes', `every ready node is draining (${names}); activate one with \`enjin nodes activate NODE\` or start an agent on another host`, { status: 503 });
  }
  const fit = open.filter((n) => !n.disk?.low);
  const elsewhere = fit.filter((n) => !avoid.has(n.nodeId));
  const ready = (elsewhere.length ? elsewhere : fit).map((n) => ({ ...n }));
  if (ready.length === 0) {
    // Every open node is short of disk: name the one with the most room, it is the nearest to taking work again.
    const best = open.reduce((a, b) => ((a.disk?.freeBytes ?? 0) >= (b.disk?.freeBytes ?? 0) ? a : b));
    throw nodeDiskFull(best.name ?? best.nodeId, best.disk!.freeBytes, best.disk!.minFreeBytes);
  }
  const placed: string[] = [];
  for (let i = 0; i < count; i++) {
    ready.sort((a, b) => a.sameService - b.sameService || a.instances - b.instances || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    const best = ready[0];
    placed.push(best.nodeId);
    best.sameService++;
    best.instances++;
  }
  return placed;
}
