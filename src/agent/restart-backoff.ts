// Restart backoff: how long an instance that keeps failing waits before the agent starts it again.
export interface BackoffPolicy {
  /** first restart delay; doubles per consecutive failure */
  initialMs: number;
  maxMs: number;
  /** an instance that stayed up this long starts again from `initialMs` */
  resetAfterMs: number;
}

/** The wait before the next restart after `failures` consecutive failures, the last run having lasted `ranMs`. */
export function nextBackoff(policy: BackoffPolicy, failures: number, ranMs: number): { waitMs: number; failures: number } {
  const { initialMs, maxMs, resetAfterMs } = policy;
  const streak = ranMs >= resetAfterMs ? 0 : failures;
  return { waitMs: Math.min(initialMs * 2 ** streak, maxMs), failures: streak + 1 };
}
