// `enjin router`: a cluster node that only carries traffic. Joins once with a token (role router), then runs a Router
// in this process (nothing else shares its event loop here) on NATS, signed with the node's key, and keeps the node's
// presence in the state exchange.
import { join, resolve } from 'node:path';
import { Router } from '../../router/router.ts';
import { componentLogger } from '../../log/logger.ts';
import { connectBus } from './bus-connection.ts';
import { joinOrResume, type NodeRoleOptions } from './membership.ts';
import { RouterPresence } from './router-presence.ts';
import { stopInOrder, type RunningRole } from './running.ts';

const log = componentLogger('router-role');

export interface RouterRoleOptions extends NodeRoleOptions {
  port: number;
  host: string;
}

export interface RunningRouter extends RunningRole {
  nodeId: string;
  port: number;
}

export async function runRouter(o: RouterRoleOptions): Promise<RunningRouter> {
  const dataDir = resolve(o.dataDir);
  const say = o.say ?? (() => {});
  const { identity, membership, joined } = await joinOrResume({
    dataDir, join: o.join, token: o.token, name: o.name, roles: ['router'], labels: o.labels, compartment: o.compartment ?? null, advertiseHost: o.advertiseHost, say,
  });
  const { nodeId, name, labels } = membership;
  say(joined ? `joined as ${nodeId}` : `resuming as ${nodeId}`);
  const started: Array<() => Promise<void>> = [];
  try {
    const bus = await connectBus({ ...membership.nats, name: `enjin-router ${name} ${nodeId}`, identity: { id: nodeId, privateKey: identity.privateKey, publicKeyB64: identity.publicKeyB64 }, keyring: null, presentKey: true });
    started.push(() => bus.close());
    const router = new Router({ routerId: nodeId, bus, dataDir: join(dataDir, 'router'), port: o.port, host: o.host });
    await router.start();
    started.push(() => router.stop());
    const presence = new RouterPresence(bus, { nodeId, name, address: membership.address, labels });
    presence.start();
    started.push(async () => presence.stop());
    log.info({ nodeId, port: router.port }, 'router running');
    return { nodeId, port: router.port, stop: () => stopInOrder(started) };
  } catch (err) {
    await stopInOrder(started);
    throw err;
  }
}
