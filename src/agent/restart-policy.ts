// What becomes of an instance whose process ended on its own (or was killed for failing its liveness probe), under its
// service's restart policy: restarted after a backoff, finished, or failed. A pure function of the policy and history.
import type { RestartSpec } from '../core/model.ts';
import type { BackoffPolicy } from './restart-backoff.ts';

/** Why the run ended. */
export type RunEnd =
  /** the process exited by itself (or was killed by a signal nobody on the agent sent) */
  | { kind: 'exit'; code: number | null; signal: string | null; how: string }
  /** the agent killed it after `retries` failed liveness probes in a row */
  | { kind: 'liveness'; how: string }
  /** a restart did not pass its readiness gate */
  | { kind: 'start-failed'; how: string };

/** What the supervisor remembers between runs to decide. */
export interface RestartHistory {
  /** when each restart within the policy's window was made (ms since the epoch), oldest first */
  attempts: number[];
  /** failed runs in a row, for the backoff delay */
  streak: number;
}

export type RestartDecision =
  | { action: 'restart'; waitMs: number; history: RestartHistory }
  /** exit 0 under on-failure, any exit under never: the instance is done, neither restarted nor replaced */
  | { action: 'finish'; reason: string }
  /** the policy gives up: the controller replaces it */
  | { action: 'fail'; reason: string };

/** A run that lasted this long starts the backoff from `initial` again, unless the agent's override says otherwise. */
export const DEFAULT_RESET_AFTER_MS = 30_000;

/** No restart comes sooner than this, whatever the policy says (a zero backoff): a crash loop never spins the CPU. */
export const MIN_RESTART_WAIT_MS = 100;

/** The policy's backoff in ms, with the agent's override (tests, operators) winning field by field. */
export function effectiveBackoff(policy: RestartSpec, override?: Partial<BackoffPolicy>): BackoffPolicy {
  return {
    initialMs: override?.initialMs ?? policy.backoff.initial * 1000,
    maxMs: override?.maxMs ?? policy.backoff.max * 1000,
    resetAfterMs: override?.resetAfterMs ?? DEFAULT_RESET_AFTER_MS,
  };
}

export function decideRestart(
  policy: RestartSpec, end: RunEnd, history: RestartHistory, ranMs: number, now: number, override?: Partial<BackoffPolicy>,
): RestartDecision {
  const clean = end.kind === 'exit' && end.code === 0 && end.signal === null;
  if (clean && policy.policy !== 'always') return { action: 'finish', reason: `${end.how}: finished (restart policy ${policy.policy})` };
  if (policy.policy === 'never') return { action: 'fail', reason: `${end.how}; restart policy never: not restarted` };
  const windowMs = policy.window * 1000;
  const attempts = history.attempts.filter((t) => now - t < windowMs);
  if (attempts.length >= policy.maxAttempts) {
    return { action: 'fail', reason: `${end.how}; restarted ${attempts.length} time${attempts.length === 1 ? '' : 's'} within ${policy.window} s (max_attempts ${policy.maxAttempts}): gave up` };
  }
  const b = effectiveBackoff(policy, override);
  // A run that stayed up long enough was not part of a crash loop: the next wait starts short again.
  const streak = ranMs >= b.resetAfterMs ? 0 : history.streak;
  const waitMs = Math.max(MIN_RESTART_WAIT_MS, Math.min(b.initialMs * 2 ** streak, b.maxMs));
  return { action: 'restart', waitMs, history: { attempts: [...attempts, now], streak: streak + 1 } };
}
