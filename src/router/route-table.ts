// The route table: Host header → service and its upstreams, built once from a RouteTableUpdate and never mutated.
import { invalid } from '../core/errors.ts';
import type { RouteTableUpdate, RouteTimeouts, Upstream } from '../core/messages.ts';

/** What a hostname resolves to. `upstreams` empty: the service is known but nothing runs, so the router answers 503. */
export interface RouteTarget {
  readonly key: string;
  readonly upstreams: readonly Upstream[];
  readonly timeouts: Readonly<RouteTimeouts>;
}

/** A service's timeouts when its manifest sets none: connect 5 s, response headers 60 s, idle body 300 s. */
export const DEFAULT_TIMEOUTS: Readonly<RouteTimeouts> = Object.freeze({ connectMs: 5_000, headerMs: 60_000, idleMs: 300_000 });

function serviceTimeouts(key: string, given: unknown): Readonly<RouteTimeouts> {
  if (given === undefined || given === null) return DEFAULT_TIMEOUTS;
  const t = given as Partial<Record<keyof RouteTimeouts, unknown>>;
  const out = { ...DEFAULT_TIMEOUTS };
  for (const name of ['connectMs', 'headerMs', 'idleMs'] as const) {
    const v = t[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > 86_400_000) throw invalid(`route table service ${key} has a malformed timeouts.${name}`);
    out[name] = v;
  }
  return Object.freeze(out);
}

/**
 * Lower-cases a Host header and strips its port (and a trailing dot), so `Foo.Example.com.:8080` and `foo.example.com`
 * route alike. An IPv6 literal keeps its brackets: `[::1]:80` → `[::1]`.
 */
export function normalizeHost(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']');
    end = close === -1 ? end : close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  if (end > 0 && host.charCodeAt(end - 1) === 46 /* . */) end--;
  const name = end === host.length ? host : host.slice(0, end);
  return name.toLowerCase();
}

function isValidPort(p: unknown): p is number {
  return typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536;
}

export class RouteTable {
  readonly incarnation: string;
  readonly seq: number;
  /** exact hostname → target */
  private readonly exact: Map<string, RouteTarget>;
  /** `*.suffix` stored under `suffix`: the lookup drops the first label of the host and asks this map */
  private readonly wildcard: Map<string, RouteTarget>;
  /** every upstream by instance id, for the router to open and close connection pools as tables change */
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** the update this table was built from, kept verbatim for persistence */
  readonly source: RouteTableUpdate;

  /** A table that routes nothing: what a router starts with before it has heard from anyone. */
  static empty(): RouteTable {
    return new RouteTable({ incarnation: '', seq: -1, hosts: {}, services: {} });
  }

  /** Throws invalid_request on a malformed update, so a bad table never replaces a good one. */
  constructor(update: RouteTableUpdate) {
    if (!update || typeof update !== 'object') throw invalid('route table must be an object');
    if (typeof update.incarnation !== 'string') throw invalid('route table incarnation must be a string');
    if (typeof update.seq !== 'number' || !Number.isInteger(update.seq)) throw invalid('route table seq must be an integer');
    if (!update.hosts || typeof update.hosts !== 'object') throw invalid('route table hosts must be an object');
    if (!update.services || typeof update.services !== 'object') throw invalid('route table services must be an object');
    this.incarnation = update.incarnation;
    this.seq = update.seq;
    this.source = update;

    const targets = new Map<string, RouteTarget>();
    const upstreams = new Map<string, Upstream>();
    for (const [key, service] of Object.entries(update.services)) {
      if (!service || !Array.isArray(service.upstreams)) throw invalid(`route table service ${key} has no upstreams list`);
      const list: Upstream[] = [];
      for (const u of service.upstreams) {
        if (!u || typeof u.instanceId !== 'string' || typeof u.host !== 'string' || !u.host || !isValidPort(u.port)) {
          throw invalid(`route table service ${key} has a malformed upstream`, [{ path: `services.${key}.upstreams`, message: JSON.stringify(u) }]);
        }
        const upstream: Upstream = Object.freeze({ instanceId: u.instanceId, host: u.host, port: u.port });
        list.push(upstream);
        upstreams.set(upstream.instanceId, upstream);
      }
      targets.set(key, Object.freeze({ key, upstreams: Object.freeze(list), timeouts: serviceTimeouts(key, service.timeouts) }));
    }

    this.exact = new Map();
    this.wildcard = new Map();
    for (const [rawHost, key] of Object.entries(update.hosts)) {
      if (typeof key !== 'string') throw invalid(`route table host ${rawHost} must map to a service key`);
      // A host naming a service the table does not describe is still a deployed name: answer 503, not 404.
      const target = targets.get(key) ?? Object.freeze({ key, upstreams: Object.freeze([]), timeouts: DEFAULT_TIMEOUTS });
      const host = normalizeHost(rawHost);
      if (host.startsWith('*.')) this.wildcard.set(host.slice(2), target);
      else this.exact.set(host, target);
    }
    this.upstreams = upstreams;
  }

  /** Exact name first, then one level of wildcard: `a.b.example.com` tries `*.b.example.com`, never `*.example.com`. */
  lookup(host: string): RouteTarget | undefined {
    const hit = this.exact.get(host);
    if (hit !== undefined) return hit;
    if (this.wildcard.size === 0) return undefined;
    const dot = host.indexOf('.');
    if (dot <= 0) return undefined;
    return this.wildcard.get(host.slice(dot + 1));
  }

  /** True if this update should replace this table: a new controller run, or a later table from the same run. */
  accepts(update: Pick<RouteTableUpdate, 'incarnation' | 'seq'>): boolean {
    if (this.seq < 0) return true;
    return update.incarnation !== this.incarnation || update.seq > this.seq;
  }
}
