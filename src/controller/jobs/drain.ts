// Connection draining before a stop: the instances leave the route table, every router applies the table without them,
// their requests in flight finish (or the service's `drain` runs out), and only then may their nodes stop them.
import type { Instance } from '../../core/model.ts';
import { drainOf } from '../../core/service-policies.ts';
import type { ActionHost } from './actions.ts';

/**
 * Drains `instances` and resolves when their nodes may be told to stop them. While an instance drains, its node still
 * sees it desired running (ControllerState.startDraining): the process keeps serving the requests it has. Each
 * service waits at most its own `drain` (seconds; default 30), capped by the controller's drainTimeoutMs if set; a
 * router that does not answer holds nothing past that. Instances of services that do not listen are in no route table
 * and are not held at all.
 */
export async function drainInstances(host: ActionHost, instances: readonly Instance[], opts: { signal?: AbortSignal; log: (l: string) => void; force?: boolean }): Promise<void> {
  const byDrainMs = new Map<number, Instance[]>();
  for (const i of instances) {
    const spec = host.state.versions.get(i.versionId)?.manifest.services[i.service];
    if (spec && !spec.listens) continue;
    // A version gone from memory (a destroyed project) gets the default: better a wait than a cut request.
    // A forced stop completes at once: out of the routes, and no wait for what is in flight.
    const ms = opts.force ? 0 : Math.min(drainOf(spec ?? {}) * 1000, host.drainTimeoutMs);
    byDrainMs.set(ms, [...(byDrainMs.get(ms) ?? []), i]);
  }
  const draining = [...byDrainMs.values()].flat();
  if (!draining.length) return;
  const released = new Set<string>();
  const release = (group: readonly Instance[]) => {
    for (const i of group) {
      if (released.has(i.id)) continue;
      released.add(i.id);
      host.state.endDraining(i.id);
    }
  };
  try {
    for (const i of draining) {
      host.state.startDraining(i.id);
      // Desired stopped takes it out of the route table (isRoutable) while draining keeps its node from stopping it.
      await host.saveInstance({ ...(host.state.instances.get(i.id) ?? i), desired: 'stopped' });
    }
    const seq = host.routes.refreshNow();
    opts.log(`draining ${draining.length} instance(s): out of the routes (table ${seq}), waiting for requests in flight`);
    await Promise.all(
      [...byDrainMs].map(async ([timeoutMs, group]) => {
        try {
          await host.routes.waitForRouters({ seq, instanceIds: group.map((i) => i.id), timeoutMs, signal: opts.signal, log: opts.log, gone: (routerId) => routerHostDown(host, routerId) });
        } finally {
          // A service with a short drain is not held by one with a long drain in the same stop.
          release(group);
        }
      }),
    );
  } finally {
    release(draining);
  }
}

/**
 * In a cluster a router runs with its node's agent and carries the node's id: when that node is down (its agent
 * silent), its router is gone with it and waiting for its answer would only hold the stop for the whole drain. A
 * router-only node, or `enjin up`'s router ('local'), is always waited for.
 */
function routerHostDown(host: ActionHost, routerId: string): string | null {
  const node = host.state.nodes.get(routerId);
  return node && node.roles.includes('agent') && node.status === 'down' ? `is on node ${node.name}, which is down` : null;
}
