// `enjin agent`: a cluster node that runs instances (and, with a router port, carries traffic too). Joins once with a
// token, then runs from DATA/node.json: an Agent on NATS signed with the node's key, and a Router in a child process
// bridged to the same bus, as `enjin up` runs it.
import { availableParallelism, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent } from '../../agent/agent.ts';
import { ProcessDriver } from '../../agent/drivers/process.ts';
import type { NodeCapacity, NodeRole } from '../../core/model.ts';
import { componentLogger } from '../../log/logger.ts';
import { defaultInstanceMemory } from '../up.ts';
import { RouterProcess } from '../up-router.ts';
import { connectBus } from './bus-connection.ts';
import { joinOrResume, type NodeRoleOptions } from './membership.ts';
import { stopInOrder, type RunningRole } from './running.ts';

const log = componentLogger('agent-role');

/** How the node joins (or resumes) is common to every node role; the rest is the agent's own. */
export interface AgentRoleOptions extends NodeRoleOptions {
  portRange: [number, number];
  /** run a router on this port too */
  routerPort?: number;
  routerHost?: string;
  /** bytes; null: no limit; absent: defaultInstanceMemory() */
  instanceMemoryBytes?: number | null;
  minFreeDiskBytes?: number;
  /** stop the instances when the agent stops (default: they keep running and are re-adopted at the next start) */
  stopInstancesOnExit?: boolean;
}

export interface RunningAgent extends RunningRole {
  nodeId: string;
  address: string;
  routerPort: number | null;
}

export async function runAgent(o: AgentRoleOptions): Promise<RunningAgent> {
  const dataDir = resolve(o.dataDir);
  const say = o.say ?? (() => {});
  const capacity: NodeCapacity = { cpus: availableParallelism(), memoryBytes: totalmem(), ports: o.portRange[1] - o.portRange[0] + 1 };
  const roles: NodeRole[] = o.routerPort === undefined ? ['agent'] : ['agent', 'router'];
  const { identity, membership, joined } = await joinOrResume({
    dataDir, join: o.join, token: o.token, name: o.name, roles, labels: o.labels, compartment: o.compartment ?? null, advertiseHost: o.advertiseHost, capacity, say,
  });
  const { nodeId, name, labels } = membership;
  const compartment = membership.compartment ?? null;
  say(joined ? `joined as ${nodeId}` : `resuming as ${nodeId} (joined ${membership.joinedAt || 'earlier'})`);
  const started: Array<() => Promise<void>> = [];
  try {
    const bus = await connectBus({ ...membership.nats, name: `enjin-agent ${name} ${nodeId}`, identity: { id: nodeId, privateKey: identity.privateKey, publicKeyB64: identity.publicKeyB64 }, keyring: null, presentKey: true });
    started.push(() => bus.close());
    const driver = new ProcessDriver({ memoryLimitBytes: o.instanceMemoryBytes === undefined ? defaultInstanceMemory() : o.instanceMemoryBytes });
    for (const line of driver.warnings) say(`warning: ${line}`);
    const agent = new Agent({
      nodeId, name, bus, dataDir: join(dataDir, 'agent'), portRange: o.portRange, driver, minFreeDiskBytes: o.minFreeDiskBytes,
      address: membership.address, labels, capacity, roles, compartment,
    });
    await agent.start();
    for (const line of agent.notices) say(`note: ${line}`);
    started.push(() => agent.stop({ stopInstances: !!o.stopInstancesOnExit }));
    let routerPort: number | null = null;
    if (o.routerPort !== undefined) {
      const router = await RouterProcess.start(bus, { routerId: nodeId, dataDir: join(dataDir, 'router'), port: o.routerPort, host: o.routerHost ?? '0.0.0.0' });
      started.push(() => router.stop());
      routerPort = router.port;
    }
    log.info({ nodeId, address: membership.address, routerPort }, 'agent running');
    return { nodeId, address: membership.address, routerPort, stop: () => stopInOrder(started) };
  } catch (err) {
    await stopInOrder(started);
    throw err;
  }
}
