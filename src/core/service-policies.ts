// A service's policies with their defaults filled in: its health check's timing, its restart policy, its rollout and
// its drain. The manifest validator writes them whole for new versions; versions stored before a field existed lack
// it, so every reader goes through these functions and never reads the optional fields directly.
import type { HealthSpec, RestartSpec, ServiceSpec, UpdateSpec } from './model.ts';

export const HEALTH_DEFAULTS = { interval: 10, timeout: 2, retries: 3, grace: 0 } as const;
export const DRAIN_DEFAULT_SECONDS = 30;

/** The health check with every timing field present; null: the service has none. */
export function healthOf(spec: Pick<ServiceSpec, 'health'>): Required<Pick<HealthSpec, 'interval' | 'timeout' | 'retries' | 'grace'>> & HealthSpec | null {
  const h = spec.health;
  if (!h) return null;
  return {
    ...h,
    interval: h.interval ?? HEALTH_DEFAULTS.interval,
    timeout: h.timeout ?? HEALTH_DEFAULTS.timeout,
    retries: h.retries ?? HEALTH_DEFAULTS.retries,
    grace: h.grace ?? HEALTH_DEFAULTS.grace,
  };
}

/**
 * Default restart policy: a service that listens is meant to stay up (always); one that does not may be a task whose
 * exit 0 is the end of its work (on-failure). Five restarts within five minutes, waiting 1 s doubling to 60 s, before
 * the instance is marked failed and replaced: a crash loop costs one start a minute at worst, never a spinning CPU.
 */
export function defaultRestart(listens: boolean): RestartSpec {
  return { policy: listens ? 'always' : 'on-failure', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } };
}

export function restartOf(spec: Pick<ServiceSpec, 'restart' | 'listens'>): RestartSpec {
  return spec.restart ?? defaultRestart(spec.listens);
}

/**
 * Default rollout, when a service has no `update:`: every new instance at once (parallelism 0), traffic moving as each
 * passes its health check, old ones stopping once the new ones are up, within 5 minutes or rolled back. That keeps a
 * deploy as fast as it was before rollouts existed (a blue/green switch); `update:` asks for batches and canaries.
 */
export function defaultUpdate(): UpdateSpec {
  return { parallelism: 0, canary: 0, minHealthyTime: 0, healthyDeadline: 300, autoRollback: true, maxSurge: 0 };
}

export function updateOf(spec: Pick<ServiceSpec, 'update'>): UpdateSpec {
  return spec.update ?? defaultUpdate();
}

export function drainOf(spec: Pick<ServiceSpec, 'drain'>): number {
  return spec.drain ?? DRAIN_DEFAULT_SECONDS;
}
