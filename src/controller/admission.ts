// Admission to the cluster (ring 0 admits ring 1): join tokens, the join itself (a token buys one node row with its
// Ed25519 key), and the key ring of admitted nodes that the controller's signed bus verifies messages against.
import { createHash, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { EnjinError, invalid } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import type { Node, NodeCapacity, NodeRole } from '../core/model.ts';
import type { Store } from '../store/store.ts';
import type { KeyRing } from '../bus/signing.ts';
import { publicKeyFromB64 } from '../bus/identity.ts';
import { componentLogger } from '../log/logger.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('admission');

/** What a joining node needs to reach the bus; the controller hands out what its operator configured for nodes. */
export interface NatsForNodes {
  /** nats://[user:password@]host:4222 (or tls://…), as nodes must dial it */
  url: string;
  /** CA bundle (PEM) to verify the NATS server's certificate */
  tlsCaPem?: string;
  /** a NATS credentials file's text (JWT + nkey seed) for nodes */
  credsText?: string;
}

export interface JoinRequest {
  token: string;
  /** base64 of the node's Ed25519 public key, SPKI DER */
  publicKey: string;
  name: string;
  roles: NodeRole[];
  labels: Record<string, string>;
  compartment: string | null;
  address: string;
  capacity: NodeCapacity | null;
  /** the id the node's identity carries; used for a new node when free, so its key file and its row agree */
  nodeId: string | null;
}

export interface JoinAnswer {
  nodeId: string;
  /** true when the key had joined before and its node row was kept */
  rejoined: boolean;
  nats: NatsForNodes;
}

export interface CreatedJoinToken {
  token: string;
  expiresAt: string;
  reusable: boolean;
}

export const DEFAULT_JOIN_TOKEN_TTL_S = 3600;
/** A join token is a credential lying around in shell histories: a month at most. */
export const MAX_JOIN_TOKEN_TTL_S = 30 * 86400;

const NODE_ID = /^node_[0-9a-z]{1,40}$/;
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const LABEL_VALUE = /^[\x20-\x7e]{0,253}$/;
const MAX_LABELS = 64;
const COMPARTMENT = /^[A-Za-z0-9_-]{1,63}(\/[A-Za-z0-9_-]{1,63}){0,7}$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const ROLES: readonly NodeRole[] = ['agent', 'router'];

export function hashJoinToken(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export interface AdmissionHost {
  store: Store;
  state: ControllerState;
  /** what nodes are told about the bus; null: this controller has no bus nodes can reach (`enjin up`) */
  nats: NatsForNodes | null;
  /**
   * Whether this controller may admit now (several controllers on one store: only the leader writes). Absent: always
   * (a single controller, `enjin up`).
   */
  leadership?: () => { leading: boolean; leader: { id: string; apiUrl: string } | null };
  now?: () => number;
}

/** A join that reached a follower: the route answers 503 not_leader naming the leader, and the CLI joins there. */
export class JoinAtLeader extends Error {
  constructor(readonly leader: { id: string; apiUrl: string } | null) {
    super(leader
      ? `this controller does not lead; join through the leader ${leader.id} at ${leader.apiUrl || '(its API address is not known yet)'}`
      : 'no controller leads right now (one takes over within seconds); join again shortly');
  }
}

export class Admission {
  readonly #h: AdmissionHost;
  readonly #now: () => number;

  constructor(host: AdmissionHost) {
    this.#h = host;
    this.#now = host.now ?? Date.now;
  }

  async createToken(opts: { ttlSeconds?: number; reusable?: boolean } = {}): Promise<CreatedJoinToken> {
    // A token no join could use would only mislead.
    if (!this.#h.nats) throw withoutBus();
    const ttl = opts.ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_S;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_JOIN_TOKEN_TTL_S) {
      throw invalid(`ttlSeconds must be a whole number from 1 to ${MAX_JOIN_TOKEN_TTL_S} (30 days), not ${JSON.stringify(opts.ttlSeconds)}`);
    }
    const reusable = opts.reusable === true;
    const token = `enjoin_${newSecret()}`;
    const now = this.#now();
    const expiresAt = new Date(now + ttl * 1000).toISOString();
    await this.#h.store.insertJoinToken({ id: newId('jtok'), hash: hashJoinToken(token), reusable, expiresAt, usedAt: null, createdAt: new Date(now).toISOString() });
    return { token, expiresAt, reusable };
  }

  /**
   * Admits a node: the request is checked whole before the token is spent (a typo does not burn it), then the token
   * is consumed atomically and the node row created, or, for a key that joined before, updated under its old id.
   */
  async join(body: unknown): Promise<JoinAnswer> {
    const nats = this.#h.nats;
    if (!nats) throw withoutBus();
    const req = parseJoinRequest(body);
    // Before the token is spent: a follower must not consume it, its rows are the leader's to write.
    const lead = this.#h.leadership?.();
    if (lead && !lead.leading) throw new JoinAtLeader(lead.leader);
    const now = new Date(this.#now()).toISOString();
    const use = await this.#h.store.consumeJoinToken(hashJoinToken(req.token), now);
    if (!use.ok) {
      const why = { unknown: 'is not a join token of this cluster', expired: 'has expired', used: 'was already used (it is single-use)' }[use.reason];
      throw new EnjinError('join_token_invalid', `the join token ${why}; make a new one with \`enjin nodes token\` on the controller`, { status: 401 });
    }
    const existing = [...this.#h.state.nodes.values()].find((n) => n.publicKey === req.publicKey);
    let id: string;
    if (existing) id = existing.id;
    else if (req.nodeId && !this.#h.state.nodes.has(req.nodeId)) id = req.nodeId;
    else id = newId('node');
    const node: Node = {
      ...(existing ?? { id, status: 'down' as const, draining: false, lastSeenAt: null, createdAt: now }),
      name: req.name,
      address: req.address,
      labels: req.labels,
      roles: req.roles,
      compartment: req.compartment,
      publicKey: req.publicKey,
      capacity: req.capacity ?? existing?.capacity ?? null,
    };
    await this.#h.store.saveNode(node);
    this.#h.state.nodes.set(node.id, node);
    log.info({ nodeId: node.id, nodeName: node.name, roles: node.roles, rejoined: !!existing, reusableToken: use.token.reusable }, existing ? 'a node joined again with its key' : 'a node joined');
    return { nodeId: node.id, rejoined: !!existing, nats };
  }
}

function withoutBus(): EnjinError {
  return new EnjinError('invalid_request', 'this enjin runs without NATS (`enjin up`): nodes cannot join it; run a cluster controller with `enjin controller --database-url … --nats …`', { status: 409 });
}

/** Checks a join body field by field, with a message that names the field and what it must be. */
export function parseJoinRequest(body: unknown): JoinRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('send a JSON object: { token, publicKey, name, roles, labels, address, compartment?, capacity? }');
  const b = body as Record<string, unknown>;
  const str = (key: string, required = true): string | null => {
    const v = b[key];
    if (v === undefined || v === null) {
      if (required) throw invalid(`${key} is missing`);
      return null;
    }
    if (typeof v !== 'string') throw invalid(`${key} must be a string`);
    return v;
  };
  const token = str('token')!;
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(token)) throw invalid('token is not a join token: copy it whole from `enjin nodes token`');
  const publicKey = str('publicKey')!;
  checkPublicKey(publicKey);
  const name = str('name')!;
  if (!NODE_NAME.test(name)) throw invalid(`name "${name.slice(0, 80)}" must be 1 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit`);
  const address = str('address')!;
  if (!isIP(address) && !HOSTNAME.test(address)) throw invalid(`address "${address.slice(0, 80)}" must be an IP address or a host name routers can reach (pass --advertise-host)`);
  const compartment = str('compartment', false);
  if (compartment !== null && !COMPARTMENT.test(compartment)) throw invalid(`compartment "${compartment.slice(0, 80)}" must look like dc1/rack-a: up to 8 parts of letters, digits, dashes or underscores, separated by /`);
  const nodeId = str('nodeId', false);
  if (nodeId !== null && !NODE_ID.test(nodeId)) throw invalid(`nodeId "${nodeId.slice(0, 80)}" is not a node id (node_ followed by lower-case letters and digits)`);

  if (!Array.isArray(b.roles) || b.roles.length === 0) throw invalid("roles must be a non-empty list of 'agent' and 'router'");
  const roles: NodeRole[] = [];
  for (const r of b.roles) {
    if (!ROLES.includes(r as NodeRole)) throw invalid(`roles may hold 'agent' and 'router', not ${JSON.stringify(r)}`);
    if (!roles.includes(r as NodeRole)) roles.push(r as NodeRole);
  }

  const labels: Record<string, string> = {};
  if (b.labels !== undefined && b.labels !== null) {
    if (typeof b.labels !== 'object' || Array.isArray(b.labels)) throw invalid('labels must be an object of strings: { "zone": "a" }');
    const entries = Object.entries(b.labels as Record<string, unknown>);
    if (entries.length > MAX_LABELS) throw invalid(`a node may have at most ${MAX_LABELS} labels, not ${entries.length}`);
    for (const [k, v] of entries) {
      if (!LABEL_KEY.test(k)) throw invalid(`label key "${k.slice(0, 80)}" must be 1 to 63 letters, digits, dots, dashes, underscores or slashes`);
      if (typeof v !== 'string' || !LABEL_VALUE.test(v)) throw invalid(`label ${k} must have a printable string value of at most 253 characters`);
      labels[k] = v;
    }
  }

  let capacity: NodeCapacity | null = null;
  if (b.capacity !== undefined && b.capacity !== null) {
    const c = b.capacity as Record<string, unknown>;
    const whole = (k: string, min: number) => {
      if (!Number.isSafeInteger(c?.[k]) || (c[k] as number) < min) throw invalid(`capacity.${k} must be a whole number of at least ${min}`);
      return c[k] as number;
    };
    capacity = { cpus: whole('cpus', 1), memoryBytes: whole('memoryBytes', 0), ports: whole('ports', 0) };
  }
  return { token, publicKey, name, roles, labels, compartment, address, capacity, nodeId };
}

function checkPublicKey(b64: string): void {
  // An Ed25519 SPKI DER key is 60 characters of base64; other key types are let through to be named in the refusal.
  if (b64.length > 2048 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw invalid('publicKey must be the base64 of an Ed25519 public key in SPKI DER form');
  // The one reading of a node's key, with its errors (not a key; not Ed25519), named for the join's field.
  try {
    publicKeyFromB64(b64);
  } catch (err) {
    throw invalid(`publicKey: ${(err as Error).message}`);
  }
}

/**
 * The keys of admitted nodes, read from the controller's working set: a node's key is trusted from the moment its join
 * is recorded, and no longer once its row is gone. Other trusted ids (controllers) come from `also`.
 */
export class AdmittedKeys implements KeyRing {
  /** base64 → key: parsing is the costly part, and a node's key never changes under its id */
  readonly #parsed = new Map<string, KeyObject>();

  constructor(private readonly state: ControllerState, private readonly also: KeyRing | null = null) {}

  publicKey(id: string): KeyObject | null {
    const b64 = this.state.nodes.get(id)?.publicKey;
    if (!b64) return this.also?.publicKey(id) ?? null;
    let key = this.#parsed.get(b64);
    if (!key) {
      try {
        key = publicKeyFromB64(b64);
      } catch (err) {
        log.error({ err, nodeId: id }, 'the stored public key of a node cannot be read; its messages are refused');
        return null;
      }
      this.#parsed.set(b64, key);
    }
    return key;
  }
}

/** How often an unknown controller id may make the key ring read the store again. */
const CONTROLLER_KEYS_REFRESH_MS = 5_000;

/**
 * The keys of the controllers sharing this store (table controller_keys). publicKey() answers from memory; an id it
 * does not know (a controller that started since) makes it read the table again, at most every few seconds, so that
 * controller's next messages pass.
 */
export class ControllerKeys implements KeyRing {
  readonly #keys = new Map<string, KeyObject>();
  #lastRefresh = 0;
  #refreshing: Promise<void> | null = null;

  constructor(private readonly store: Pick<Store, 'controllerKeys'>, private readonly now: () => number = Date.now) {}

  async refresh(): Promise<void> {
    this.#lastRefresh = this.now();
    for (const { id, publicKey } of await this.store.controllerKeys()) {
      if (this.#keys.has(id)) continue;
      try {
        this.#keys.set(id, publicKeyFromB64(publicKey));
      } catch (err) {
        log.error({ err, controllerId: id }, "a controller's stored public key cannot be read; its messages are refused");
      }
    }
  }

  publicKey(id: string): KeyObject | null {
    const key = this.#keys.get(id);
    if (key) return key;
    if (id.startsWith('ctl_') && !this.#refreshing && this.now() - this.#lastRefresh >= CONTROLLER_KEYS_REFRESH_MS) {
      this.#refreshing = this.refresh()
        .catch((err: unknown) => log.warn({ err }, "reading controllers' keys failed; the next unknown controller id tries again"))
        .finally(() => (this.#refreshing = null));
    }
    return null;
  }
}
