// A node's membership of the cluster, kept in its data directory: its Ed25519 identity, and DATA/node.json (node id,
// API, how to reach NATS) written by the one join that spent a token, so a restart with the same --data needs none.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { joinCluster } from '../../client/client.ts';
import { loadOrCreateIdentity, type Identity } from '../../bus/identity.ts';
import { EnjinError } from '../../core/errors.ts';
import type { NodeCapacity, NodeRole } from '../../core/model.ts';
import { componentLogger } from '../../log/logger.ts';

const log = componentLogger('membership');

export const NODE_FILE = 'node.json';

/** What DATA/node.json holds. */
export interface Membership {
  nodeId: string;
  /** the controller API it joined through */
  api: string;
  /** as it last ran: a restart without --name or --labels keeps them */
  name: string;
  labels: Record<string, string>;
  roles: NodeRole[];
  /**
   * the compartment it joined in (or was last started with): a restart without --compartment keeps it, so the node
   * can tell a controller rebuilding its store from the nodes. Absent from a node.json written before it was kept.
   */
  compartment?: string | null;
  /** the address routers reach this node's instances at */
  address: string;
  nats: { url: string; tlsCaFile?: string; credsFile?: string };
  joinedAt: string;
}

/** What every node role (agent, router) is started with to join or resume. */
export type NodeRoleOptions = Pick<JoinOptions, 'dataDir' | 'join' | 'token' | 'name' | 'labels' | 'advertiseHost' | 'say'> & { compartment?: string };

export interface JoinOptions {
  dataDir: string;
  /** the controller API; needed only for the first start */
  join?: string;
  token?: string;
  /** default: as the node last ran, else the host name */
  name?: string;
  roles: NodeRole[];
  /** default: as the node last ran, else none */
  labels?: Record<string, string>;
  compartment?: string | null;
  /** what routers dial; default: this host's address on the route to the controller */
  advertiseHost?: string;
  capacity?: NodeCapacity | null;
  /** progress for people (stderr) */
  say?: (line: string) => void;
}

export interface Member {
  identity: Identity;
  membership: Membership;
  /** false when node.json was already there */
  joined: boolean;
}

/** Joins with the token the first time; afterwards resumes from node.json (a token given then is not spent). */
export async function joinOrResume(o: JoinOptions): Promise<Member> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const identity = await loadOrCreateIdentity(join(o.dataDir, 'identity'));
  const file = join(o.dataDir, NODE_FILE);
  if (existsSync(file)) {
    const membership = readMembership(file);
    if (o.token) o.say?.(`${o.dataDir} has joined already as ${membership.nodeId}; the token is not used`);
    const next: Membership = { ...membership, address: o.advertiseHost ?? membership.address, name: o.name ?? membership.name, labels: o.labels ?? membership.labels, compartment: o.compartment ?? membership.compartment ?? null };
    if (JSON.stringify(next) !== JSON.stringify(membership)) writePrivate(file, `${JSON.stringify(next, null, 2)}\n`);
    return { identity, membership: next, joined: false };
  }
  if (!o.join || !o.token) {
    throw new EnjinError('not_joined', `${o.dataDir} has not joined a cluster yet: pass --join API_URL --token TOKEN (make a token with \`enjin nodes token\` where the controller runs)`, { status: 400 });
  }
  const api = o.join.replace(/\/$/, '');
  const name = o.name ?? hostname();
  const labels = o.labels ?? {};
  const address = o.advertiseHost ?? (await localAddressTowards(api));
  o.say?.(`joining ${api} as ${name} (${o.roles.join(', ')}, reachable at ${address})…`);
  const answer = await joinCluster(api, {
    token: o.token, publicKey: identity.publicKeyB64, name, roles: o.roles, labels,
    compartment: o.compartment ?? null, address, capacity: o.capacity ?? null, nodeId: identity.id,
  });
  const nats: Membership['nats'] = { url: answer.nats.url };
  if (answer.nats.tlsCaPem) {
    nats.tlsCaFile = join(o.dataDir, 'nats-ca.pem');
    writePrivate(nats.tlsCaFile, answer.nats.tlsCaPem);
  }
  if (answer.nats.credsText) {
    nats.credsFile = join(o.dataDir, 'nats.creds');
    writePrivate(nats.credsFile, answer.nats.credsText);
  }
  const membership: Membership = { nodeId: answer.nodeId, api, name, labels, roles: o.roles, compartment: o.compartment ?? null, address, nats, joinedAt: new Date().toISOString() };
  // 0600: the NATS URL may carry a password.
  writePrivate(file, `${JSON.stringify(membership, null, 2)}\n`);
  log.info({ nodeId: answer.nodeId, api, rejoined: answer.rejoined }, 'joined the cluster');
  return { identity, membership, joined: true };
}

function readMembership(file: string): Membership {
  let m: Partial<Membership>;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as Partial<Membership>;
  } catch (err) {
    throw new EnjinError('invalid_config', `${file} cannot be read (${(err as Error).message}); restore it, or delete it and join again with --join and --token`, { status: 500, cause: err });
  }
  if (typeof m.nodeId !== 'string' || typeof m.api !== 'string' || typeof m.nats?.url !== 'string' || typeof m.address !== 'string') {
    throw new EnjinError('invalid_config', `${file} lacks nodeId, api, address or nats.url; delete it and join again with --join and --token`, { status: 500 });
  }
  return { roles: ['agent'], joinedAt: '', name: hostname(), labels: {}, ...m } as Membership;
}

function writePrivate(path: string, content: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

/**
 * The address of this host on its route to the controller: the one peers on that network can reach it at, without
 * guessing among interfaces (a host may have docker bridges, VPNs…). --advertise-host overrides it.
 */
export function localAddressTowards(api: string, timeoutMs = 5000): Promise<string> {
  let url: URL;
  try {
    url = new URL(api);
  } catch {
    return Promise.reject(new EnjinError('invalid_request', `--join ${api} is not a URL; pass the controller's API, e.g. http://10.0.0.1:7000`));
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      const address = socket.localAddress?.replace(/^::ffff:/, '');
      socket.destroy();
      if (address) resolve(address);
      else reject(new EnjinError('controller_unreachable', `cannot tell this host's address towards ${api}; pass --advertise-host`, { status: 503 }));
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new EnjinError('controller_unreachable', `no answer from ${api} within ${timeoutMs / 1000} s; check --join`, { status: 503 }));
    });
    socket.once('error', (err) => reject(new EnjinError('controller_unreachable', `cannot reach ${api} (${err.message}); check --join and that the controller runs`, { status: 503 })));
  });
}
