// Restart backoff: how long an instance that keeps failing waits before the agent starts it again (restart-policy.ts
// computes it from the service's `restart.backoff`; the agent's `backoff` option overrides it field by field).
export interface BackoffPolicy {
  /** first restart delay; doubles per consecutive failure */
  initialMs: number;
  maxMs: number;
  /** an instance that stayed up this long starts again from `initialMs` */
  resetAfterMs: number;
}
