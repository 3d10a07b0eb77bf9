// The route table: Host header → service and its upstreams, built once from a RouteTableUpdate and never mutated.
import { invalid } from '../core/errors.ts';
import type { RouteTableUpdate, RouteTimeouts } from '../core/messages.ts';
import { routedUpstream, WeightedChoice, type RoutedUpstream } from './weighted-choice.ts';

/** What a hostname resolves to. `upstreams` empty: the service is known but nothing runs, so the router answers 503. */
export interface RouteTarget {
  readonly key: string;
  readonly upstreams: readonly RoutedUpstream[];
  readonly timeouts: Readonly<RouteTimeouts>;
  /** the service's weighted round robin; its scores live as long as this table */
  readonly choice: WeightedChoice;
}

function target(key: string, upstreams: readonly RoutedUpstream[], timeouts: Readonly<RouteTimeouts>): RouteTarget {
  return Object.freeze({ key, upstreams, timeouts, choice: new WeightedChoice(upstreams) });
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

/** Absent (a table from before weights): 1. */
function isValidWeight(w: unknown): boolean {
  return w === undefined || (typeof w === 'number' && Number.isFinite(w) && w >= 0 && w <= 1_000_000);
}

/** Absent in tables from before versions were listed. */
function isValidVersion(v: unknown): boolean {
  if (v === undefined) return true;
  const o = v as { id?: unknown; number?: unknown } | null;
  return !!o && typeof o === 'object' && typeof o.id === 'string' && typeof o.number === 'number' && Number.isInteger(o.number);
}

export class RouteTable {
  readonly incarnation: string;
  readonly seq: number;
  /** exact hostname → target */
  private readonly exact: Map<string, RouteTarget>;
  /** `*.suffix` stored under `suffix`: the lookup drops the first label of the host and asks this map */
  private readonly wildcard: Map<string, RouteTarget>;
  /** every upstream by instance id, for the router to open and close connection pools as tables change */
  readonly upstreams: ReadonlyMap<string, RoutedUpstream>;
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
    const upstreams = new Map<string, RoutedUpstream>();
    for (const [key, service] of Object.entries(update.services)) {
      if (!service || !Array.isArray(service.upstreams)) throw invalid(`route table service ${key} has no upstreams list`);
      const list: RoutedUpstream[] = [];
      for (const u of service.upstreams) {
        if (!u || typeof u.instanceId !== 'string' || typeof u.host !== 'string' || !u.host || !isValidPort(u.port) || !isValidWeight(u.weight) || !isValidVersion(u.version)) {
          throw invalid(`route table service ${key} has a malformed upstream`, [{ path: `services.${key}.upstreams`, message: JSON.stringify(u) }]);
        }
        const upstream = routedUpstream(u);
        list.push(upstream);
        upstreams.set(upstream.instanceId, upstream);
      }
      targets.set(key, target(key, Object.freeze(list), serviceTimeouts(key, service.timeouts)));
    }

    this.exact = new Map();
    this.wildcard = new Map();
    for (const [rawHost, key] of Object.entries(update.hosts)) {
      if (typeof key !== 'string') throw invalid(`route table host ${rawHost} must map to a service key`);
      // A host naming a service the table does not describe is still a deployed name: answer 503, not 404.
      const found = targets.get(key) ?? target(key, Object.freeze([]), DEFAULT_TIMEOUTS);
      if (!targets.has(key)) targets.set(key, found);
      const host = normalizeHost(rawHost);
      if (host.startsWith('*.')) this.wildcard.set(host.slice(2), found);
      else this.exact.set(host, found);
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
