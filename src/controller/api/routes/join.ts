// Admission over HTTP: POST /v1/nodes/tokens makes a join token (admin), POST /v1/join admits a node (no bearer token:
// the join token in the body is the credential, so failed joins are counted per address and refused past a limit).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { EnjinError } from '../../../core/errors.ts';
import { DEFAULT_JOIN_TOKEN_TTL_S, JoinAtLeader, MAX_JOIN_TOKEN_TTL_S, type Admission } from '../../admission.ts';

/** Route config of the routes reachable without a bearer token (server.ts skips its token check for them). */
export const PUBLIC_ROUTE: Record<string, unknown> = { public: true };

export interface JoinFailureLimits {
  /** failed joins allowed from one address per window */
  maxFailures: number;
  windowMs: number;
  now?: () => number;
}

/** Enough for an operator's typos; far too few to guess a 256-bit token, and a flood costs one map entry per address. */
const DEFAULT_LIMITS: JoinFailureLimits = { maxFailures: 10, windowMs: 60_000 };
/** Addresses remembered at most; past this the oldest are forgotten first. */
const MAX_ADDRESSES = 10_000;

/** Counts failed joins per client address in a fixed window and refuses an address that used up its allowance. */
export class JoinFailureLimiter {
  readonly #limits: JoinFailureLimits;
  readonly #now: () => number;
  readonly #failures = new Map<string, { since: number; count: number }>();

  constructor(limits: Partial<JoinFailureLimits> = {}) {
    this.#limits = { ...DEFAULT_LIMITS, ...limits };
    this.#now = limits.now ?? Date.now;
  }

  /** Throws a 429 while `address` is over its allowance. */
  check(address: string): void {
    const f = this.#current(address);
    if (f && f.count >= this.#limits.maxFailures) {
      const wait = Math.ceil((f.since + this.#limits.windowMs - this.#now()) / 1000);
      throw new EnjinError('join_rate_limited', `${f.count} failed joins from ${address} in ${this.#limits.windowMs / 1000} s; wait ${wait} s, then join with a valid token (\`enjin nodes token\`)`, { status: 429 });
    }
  }

  failed(address: string): void {
    const f = this.#current(address);
    if (f) {
      f.count++;
      return;
    }
    if (this.#failures.size >= MAX_ADDRESSES) this.#failures.delete(this.#failures.keys().next().value!);
    this.#failures.set(address, { since: this.#now(), count: 1 });
  }

  #current(address: string): { since: number; count: number } | null {
    const f = this.#failures.get(address);
    if (!f) return null;
    if (this.#now() - f.since >= this.#limits.windowMs) {
      this.#failures.delete(address);
      return null;
    }
    return f;
  }
}

export function joinRoutes(admission: Admission, limiter = new JoinFailureLimiter()) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.post('/v1/nodes/tokens', {
      schema: {
        summary: 'Make a join token: `enjin agent --join API --token T` on a host spends it (a reusable one admits any number of hosts until it expires)',
        body: Type.Optional(Type.Object({
          ttlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_JOIN_TOKEN_TTL_S, default: DEFAULT_JOIN_TOKEN_TTL_S })),
          reusable: Type.Optional(Type.Boolean({ default: false })),
        }, { additionalProperties: false })),
      },
    }, async (req, reply) => reply.status(201).send(await admission.createToken(req.body ?? {})));

    app.post('/v1/join', {
      config: PUBLIC_ROUTE,
      schema: {
        summary: 'Join the cluster with a join token and an Ed25519 public key; answers the node id and how to reach the bus',
        security: [],
        // Checked by the admission itself, field by field, so every refusal names its field (and counts as a failure).
        body: Type.Unknown(),
      },
    }, async (req: FastifyRequest, reply) => {
      const address = req.ip;
      limiter.check(address);
      try {
        return await admission.join(req.body);
      } catch (err) {
        // Shaped as the other refusals of followers (code not_leader, and the leader), so a client can go there.
        if (err instanceof JoinAtLeader) return reply.status(503).send({ error: { code: 'not_leader', message: err.message }, leader: err.leader });
        // A store outage is not the client's fault and must not lock a host out.
        if (err instanceof EnjinError && err.status < 500) limiter.failed(address);
        throw err;
      }
    });
  };
}
