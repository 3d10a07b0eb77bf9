// Dropping unpacked versions on the nodes once nobody needs them, keeping the newest few for quick rollbacks.
import type { Bus } from '../bus/bus.ts';
import { subjects } from '../core/messages.ts';
import { componentLogger } from '../log/logger.ts';
import { buildIdOf } from './releases.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('controller');

/** unpacked versions each node keeps per project beyond the ones in use */
const KEEP_PREPARED_VERSIONS = 3;

/**
 * Asks every node to drop unpacked versions nobody needs: kept are the versions any project wants or routes to and
 * the newest few of each project, so a rollback does not have to fetch and prepare again.
 */
export function collectVersions(state: ControllerState, bus: Bus): void {
  const keep = new Set<string>();
  for (const p of state.projects.values()) {
    const build = (id: string | null) => {
      const v = id ? state.versions.get(id) : undefined;
      if (v) keep.add(buildIdOf(v));
    };
    build(p.currentVersionId);
    build(p.routedVersionId);
    for (const v of state.versionsOf(p.id).slice(-KEEP_PREPARED_VERSIONS)) keep.add(buildIdOf(v));
  }
  for (const n of state.nodes.values()) {
    if (n.status !== 'ready') continue;
    void bus.request(subjects.agentRpc(n.id), { op: 'gc', keep: [...keep] }, { timeoutMs: 60_000 }).catch((err: unknown) => log.warn({ err, nodeId: n.id }, 'collecting unused versions on the node failed; the next successful tree tries again'));
  }
}
