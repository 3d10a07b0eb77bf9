// The policy stanzas of a service in enjin.yaml: `health:`, `restart:`, `update:` and `drain:`, read with the
// validator's problem reporting (line and column) and written whole, defaults filled, for new versions.
import { isMap, isScalar, type Node, type YAMLMap } from 'yaml';
import type { HealthSpec, RestartSpec, UpdateSpec } from './model.ts';
import { DURATION_RULE, durationSeconds, formatDuration } from './durations.ts';
import { describe } from './manifest-wording.ts';
import {
  BACKOFF_INITIAL_MIN, BACKOFF_KEYS, HEALTH_INTERVAL_MIN, HEALTH_KEYS, HEALTH_RETRIES_MAX, HOUR, RESTART_ATTEMPTS_MAX,
  RESTART_KEYS, RESTART_POLICIES, RESTART_WINDOW_MAX, RESTART_WINDOW_MIN, START_TIMEOUT_DEFAULT, UPDATE_COUNT_MAX,
  UPDATE_DEADLINE_MAX, UPDATE_KEYS,
} from './manifest-rules.ts';
import type { Entry } from './manifest-validator.ts';
import { defaultRestart, defaultUpdate, DRAIN_DEFAULT_SECONDS, HEALTH_DEFAULTS } from './service-policies.ts';

/** What reading the policy stanzas needs of the validator. */
export interface PoliciesHost {
  problem(node: Node | null, fallback: Node | null, path: string, message: string): void;
  entries(map: YAMLMap, path: string, allowed: readonly string[] | null): Entry[];
}

const HEALTH_KINDS = ['http', 'tcp', 'command'] as const;

/** A duration from `min` to `max` seconds (`above`: strictly more than min); null after reporting a problem. */
function duration(h: PoliciesHost, e: Entry, path: string, min: number, max: number, above = false): number | null {
  const v = e.value;
  const seconds = isScalar(v) ? durationSeconds(v.value) : null;
  if (seconds === null) {
    h.problem(v, e.anchor, path, `must be ${DURATION_RULE} (got ${describe(v)})`);
    return null;
  }
  if ((above ? seconds <= min : seconds < min) || seconds > max) {
    const low = above ? `more than ${formatDuration(min)}` : `at least ${formatDuration(min)}`;
    h.problem(v, e.anchor, path, `must be ${low} and at most ${formatDuration(max)} (got ${describe(v)})`);
    return null;
  }
  return seconds;
}

function integer(h: PoliciesHost, e: Entry, path: string, min: number, max: number, unit = ''): number | null {
  const v = e.value;
  if (!isScalar(v) || typeof v.value !== 'number' || !Number.isInteger(v.value) || v.value < min || v.value > max) {
    h.problem(v, e.anchor, path, `must be a whole number${unit} from ${min} to ${max} (got ${describe(v)})`);
    return null;
  }
  return v.value;
}

function boolean(h: PoliciesHost, e: Entry, path: string, meaning: string): boolean | null {
  const v = e.value;
  if (!isScalar(v) || typeof v.value !== 'boolean') {
    h.problem(v, e.anchor, path, `must be true or false: ${meaning} (got ${describe(v)})`);
    return null;
  }
  return v.value;
}

function text(h: PoliciesHost, e: Entry, path: string, what: string, pattern: RegExp | null = null): string | null {
  const v = e.value;
  if (!isScalar(v) || typeof v.value !== 'string' || v.value.trim() === '' || (pattern && !pattern.test(v.value))) {
    h.problem(v, e.anchor, path, `must be ${what} (got ${describe(v)})`);
    return null;
  }
  return v.value;
}

function mapOf(h: PoliciesHost, e: Entry, path: string, example: string, allowed: readonly string[]): Map<string, Entry> | null {
  const v = e.value;
  if (!isMap(v)) {
    h.problem(v, e.anchor, path, `must be a map, e.g. ${example} (got ${describe(v)})`);
    return null;
  }
  return new Map(h.entries(v, path, allowed).map((x) => [x.key, x]));
}

function lineOf(node: Node | null, lineAt: (offset: number) => number): number {
  return node?.range ? lineAt(node.range[0]) : 0;
}

/**
 * `health: { http: /healthz }` (or `tcp: true`, or `command: CMD`) with its timing. A map with none of the three
 * (`health: { start_timeout: 600 }`, which was valid before checks had kinds) means what it meant then: ready once
 * the port accepts connections, which is the tcp check, so it is written as `tcp: true`.
 */
export function readHealth(h: PoliciesHost, e: Entry, path: string, lineAt: (offset: number) => number): HealthSpec | null {
  const v = e.value;
  if (isScalar(v) && v.value === null) return null;
  const byKey = mapOf(h, e, path, '{ http: /healthz }', HEALTH_KEYS);
  if (!byKey) return null;
  const health: HealthSpec = { startTimeout: START_TIMEOUT_DEFAULT };

  const kinds = HEALTH_KINDS.filter((k) => byKey.has(k));
  for (const extra of kinds.slice(1)) {
    const first = byKey.get(kinds[0])!;
    h.problem(byKey.get(extra)!.keyNode, null, `${path}.${extra}`, `cannot be given with ${kinds[0]} (line ${lineOf(first.keyNode, lineAt)}); a service has one check: http, tcp or command`);
  }
  const http = byKey.get('http');
  if (http) {
    const p = text(h, http, `${path}.http`, 'a URL path starting with "/", without spaces, e.g. /healthz', /^\/[^\s]*$/);
    if (p !== null) health.http = p;
  }
  const tcp = byKey.get('tcp');
  if (tcp) {
    const t = tcp.value;
    if (!isScalar(t) || t.value !== true) {
      h.problem(t, tcp.anchor, `${path}.tcp`, `must be true: the service is healthy while $PORT accepts connections; remove health for no check (got ${describe(t)})`);
    } else {
      health.tcp = true;
    }
  }
  const command = byKey.get('command');
  if (command) {
    const c = text(h, command, `${path}.command`, 'a non-empty shell command, healthy when it exits 0, e.g. "command: ./check.sh"');
    if (c !== null) health.command = c.trim();
  }
  if (kinds.length === 0) health.tcp = true;

  for (const key of ['expect', 'host'] as const) {
    const entry = byKey.get(key);
    if (!entry) continue;
    if (!http) {
      h.problem(entry.keyNode, null, `${path}.${key}`, `only applies to an http check; add "http: /path" or remove ${key}`);
      continue;
    }
    const value = key === 'expect'
      ? text(h, entry, `${path}.expect`, 'the text the response body must contain, e.g. "ok"')
      : text(h, entry, `${path}.host`, 'the Host header to send, a hostname with an optional :port, e.g. app.example.com', /^[A-Za-z0-9.-]+(:\d{1,5})?$/);
    if (value !== null) health[key] = value;
  }

  const get = <T>(key: string, read: (x: Entry) => T | null, fallback: T): T => {
    const entry = byKey.get(key);
    return entry ? read(entry) ?? fallback : fallback;
  };
  health.startTimeout = get('start_timeout', (x) => integer(h, x, `${path}.start_timeout`, 1, 600, ' of seconds'), START_TIMEOUT_DEFAULT);
  health.interval = get('interval', (x) => duration(h, x, `${path}.interval`, HEALTH_INTERVAL_MIN, HOUR), HEALTH_DEFAULTS.interval);
  // Left out, the timeout is the default or the interval if that is shorter: `interval: 1s` alone is fine.
  const timeoutEntry = byKey.get('timeout');
  const timeoutDefault = Math.min(HEALTH_DEFAULTS.timeout, health.interval);
  health.timeout = timeoutEntry ? duration(h, timeoutEntry, `${path}.timeout`, 0, HOUR, true) ?? timeoutDefault : timeoutDefault;
  if (timeoutEntry && health.timeout > health.interval) {
    h.problem(timeoutEntry.value, timeoutEntry.anchor, `${path}.timeout`, `must not exceed the interval between probes (${formatDuration(health.interval)}); shorten the timeout or lengthen the interval (got ${describe(timeoutEntry.value)})`);
  }
  health.retries = get('retries', (x) => integer(h, x, `${path}.retries`, 1, HEALTH_RETRIES_MAX), HEALTH_DEFAULTS.retries);
  health.grace = get('grace', (x) => duration(h, x, `${path}.grace`, 0, HOUR), HEALTH_DEFAULTS.grace);
  return health;
}

/** Whether a check needs the service to listen on $PORT: http and tcp probe the port, a command check does not. */
export function healthNeedsPort(health: HealthSpec | null): boolean {
  return health !== null && health.command === undefined;
}

/**
 * `restart: { policy, max_attempts, window, backoff: { initial, max } }`, or `restart: never` for the policy alone.
 * Parts left out come from the default for a service that does (or does not) listen.
 */
export function readRestart(h: PoliciesHost, e: Entry | undefined, path: string, listens: boolean): RestartSpec {
  const out = defaultRestart(listens);
  if (!e) return out;
  const v = e.value;
  if (isScalar(v) && v.value === null) return out;
  const policyOf = (x: Entry): RestartSpec['policy'] | null => {
    const p = x.value;
    if (!isScalar(p) || !(RESTART_POLICIES as readonly unknown[]).includes(p.value)) {
      h.problem(p, x.anchor, `${path}${x === e ? '' : '.policy'}`, `must be one of ${RESTART_POLICIES.join(', ')} (got ${describe(p)})`);
      return null;
    }
    return p.value as RestartSpec['policy'];
  };
  if (isScalar(v) && typeof v.value === 'string') {
    out.policy = policyOf(e) ?? out.policy;
    return out;
  }
  const byKey = mapOf(h, e, path, '{ policy: on-failure, max_attempts: 5, window: 5m }', RESTART_KEYS);
  if (!byKey) return out;
  const policy = byKey.get('policy');
  if (policy) out.policy = policyOf(policy) ?? out.policy;
  const attempts = byKey.get('max_attempts');
  if (attempts) out.maxAttempts = integer(h, attempts, `${path}.max_attempts`, 0, RESTART_ATTEMPTS_MAX) ?? out.maxAttempts;
  const window = byKey.get('window');
  if (window) out.window = duration(h, window, `${path}.window`, RESTART_WINDOW_MIN, RESTART_WINDOW_MAX) ?? out.window;
  const backoff = byKey.get('backoff');
  if (backoff && !(isScalar(backoff.value) && backoff.value.value === null)) {
    const parts = mapOf(h, backoff, `${path}.backoff`, '{ initial: 1s, max: 1m }', BACKOFF_KEYS);
    if (parts) {
      const initial = parts.get('initial');
      if (initial) out.backoff.initial = duration(h, initial, `${path}.backoff.initial`, BACKOFF_INITIAL_MIN, HOUR) ?? out.backoff.initial;
      const max = parts.get('max');
      if (max) out.backoff.max = duration(h, max, `${path}.backoff.max`, BACKOFF_INITIAL_MIN, HOUR) ?? out.backoff.max;
      if (out.backoff.max < out.backoff.initial) {
        const at = max ?? initial!;
        h.problem(at.value, at.anchor, `${path}.backoff.${max ? 'max' : 'initial'}`, `the longest wait (max ${formatDuration(out.backoff.max)}) must not be shorter than the first (initial ${formatDuration(out.backoff.initial)})`);
      }
    }
  }
  return out;
}

/** `update: { parallelism, canary, min_healthy_time, healthy_deadline, auto_rollback, max_surge }`, parts defaulted. */
export function readUpdate(h: PoliciesHost, e: Entry, path: string): UpdateSpec {
  const out = defaultUpdate();
  const v = e.value;
  if (isScalar(v) && v.value === null) return out;
  const byKey = mapOf(h, e, path, '{ parallelism: 1, min_healthy_time: 10s, healthy_deadline: 5m }', UPDATE_KEYS);
  if (!byKey) return out;
  const counts = { parallelism: 'parallelism', canary: 'canary', max_surge: 'maxSurge' } as const;
  for (const [key, field] of Object.entries(counts)) {
    const entry = byKey.get(key);
    if (entry) out[field] = integer(h, entry, `${path}.${key}`, 0, UPDATE_COUNT_MAX, ' of instances') ?? out[field];
  }
  const minHealthy = byKey.get('min_healthy_time');
  if (minHealthy) out.minHealthyTime = duration(h, minHealthy, `${path}.min_healthy_time`, 0, HOUR) ?? out.minHealthyTime;
  const deadline = byKey.get('healthy_deadline');
  if (deadline) out.healthyDeadline = duration(h, deadline, `${path}.healthy_deadline`, 1, UPDATE_DEADLINE_MAX) ?? out.healthyDeadline;
  if (out.healthyDeadline <= out.minHealthyTime) {
    const at = deadline ?? minHealthy!;
    h.problem(at.value, at.anchor, `${path}.${deadline ? 'healthy_deadline' : 'min_healthy_time'}`, `healthy_deadline (${formatDuration(out.healthyDeadline)}) must be longer than min_healthy_time (${formatDuration(out.minHealthyTime)}): an instance needs time to start before it can stay healthy that long`);
  }
  const rollback = byKey.get('auto_rollback');
  if (rollback) out.autoRollback = boolean(h, rollback, `${path}.auto_rollback`, 'whether a failed rollout puts the previous release back') ?? out.autoRollback;
  return out;
}

/** `drain: 30s`: how long a stopping instance's in-flight requests may take once it has left the routes. */
export function readDrain(h: PoliciesHost, e: Entry, path: string): number {
  return duration(h, e, path, 0, HOUR) ?? DRAIN_DEFAULT_SECONDS;
}
