// The rules and shapes of enjin.yaml shared by its parser, its validator and the Procfile reader: limits, defaults,
// reserved names, and the one error a file's problems are reported in.
import { EnjinError, type ErrorDetail } from './errors.ts';
import type { Manifest, ServiceTimeouts } from './model.ts';

export const MANIFEST_FILE = 'enjin.yaml';

export const INSTANCES_MAX = 100;
export const START_TIMEOUT_DEFAULT = 60;
export const STOP_TIMEOUT_DEFAULT = 10;
/** Seconds the router waits on a service's instances: to connect, for response headers, between body chunks. */
export const SERVICE_TIMEOUTS_DEFAULT: ServiceTimeouts = { connect: 5, header: 60, idle: 300 };
export const SERVICE_TIMEOUTS_MAX: ServiceTimeouts = { connect: 60, header: 3600, idle: 86400 };

export const TOP_KEYS = ['project', 'prepare', 'build', 'release', 'env', 'services', 'volumes'] as const;
export const BUILD_KEYS = ['builder', 'steps'] as const;
/** What `build:` may name: a builder, or none to turn detection off. */
export const BUILD_CHOICES = ['node', 'python', 'static', 'none'] as const;
export const SERVICE_KEYS = [
  'command', 'instances', 'hostnames', 'health', 'port', 'env', 'stop_timeout', 'timeouts', 'volumes', 'restart', 'update', 'drain',
] as const;
export const HEALTH_KEYS = ['http', 'tcp', 'command', 'expect', 'host', 'interval', 'timeout', 'retries', 'grace', 'start_timeout'] as const;
export const RESTART_KEYS = ['policy', 'max_attempts', 'window', 'backoff'] as const;
export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const;
export const BACKOFF_KEYS = ['initial', 'max'] as const;
export const UPDATE_KEYS = ['parallelism', 'canary', 'min_healthy_time', 'healthy_deadline', 'auto_rollback', 'max_surge'] as const;

/** Bounds of the policy stanzas, in seconds unless said otherwise: wide enough for real apps, narrow enough to catch typos. */
export const HOUR = 3600;
export const HEALTH_INTERVAL_MIN = 1;
export const HEALTH_RETRIES_MAX = 100;
export const RESTART_ATTEMPTS_MAX = 1000;
export const RESTART_WINDOW_MIN = 1;
export const RESTART_WINDOW_MAX = 24 * HOUR;
/** A backoff shorter than this is a spinning CPU under another name. */
export const BACKOFF_INITIAL_MIN = 0.1;
export const UPDATE_COUNT_MAX = INSTANCES_MAX;
export const UPDATE_DEADLINE_MAX = 24 * HOUR;
export const TIMEOUT_KEYS = ['connect', 'header', 'idle'] as const;

export const ENV_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * Keys that name an object's prototype machinery in JavaScript. A user-chosen key is looked up in plain objects
 * (services, env, scale), where these would reach Object.prototype instead of the user's data, so they are refused.
 */
export const PROTOTYPE_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Set by the agent for every listening instance; a manifest value would be silently wrong. */
export const RESERVED_ENV = new Set(['PORT']);

/** One error for a whole file's worth of problems, sorted by position, so the user fixes them in one pass. */
export function manifestInvalid(file: string, details: ErrorDetail[]): EnjinError {
  const sorted = [...details].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  const n = sorted.length;
  return new EnjinError('manifest_invalid', `${file} has ${n} problem${n === 1 ? '' : 's'}; fix ${n === 1 ? 'it' : 'them'} and deploy again`, {
    status: 422,
    details: sorted,
  });
}

/** `build:` in enjin.yaml: a builder to use instead of detecting one (or none), and steps to run after its own. */
export interface BuildSetting {
  /** null: detect from the files */
  builder: (typeof BUILD_CHOICES)[number] | null;
  steps: string[];
}

/** Where a key of enjin.yaml is, for problems found once the other files of the package are known. */
export interface Place {
  line: number;
  column: number;
}

/** enjin.yaml read to be completed by a Procfile or a builder (see package-manifest.ts): nothing is required yet. */
export interface ManifestParts {
  /** services without a command have command '' (see `commandless`) */
  manifest: Manifest;
  build: BuildSetting | null;
  prepareGiven: boolean;
  /** services given without a command, and where */
  commandless: Map<string, Place>;
  /** services given with a command, and where that command is */
  commandAt: Map<string, Place>;
  /** where to point at the whole file */
  top: Place;
}
