// Waiting on what nodes report: a start job waits for its instance to be reported running, a stop job for the node
// to report it gone. Driven by the controller state's change events, never by polling.
import { EnjinError } from '../../core/errors.ts';
import type { Instance } from '../../core/model.ts';
import type { ControllerState } from '../state.ts';

/** What a wait makes of the instance's row as it is now: keep waiting, done, or fail with this error. */
export type WaitVerdict = 'wait' | 'done' | Error;

/**
 * Resolves once `judge` says 'done' for the instance's row (null once the row is gone), rejects with the error it
 * returns, with `onTimeout()`'s error after `timeoutMs`, or with the signal's reason when the job is aborted.
 * `onTimeout` may instead return 'done' (e.g. the node is down: the tombstone stays, and that is the outcome).
 */
export function waitForInstance(
  state: ControllerState,
  id: string,
  judge: (i: Instance | null) => WaitVerdict,
  opts: { timeoutMs: number; signal?: AbortSignal; onTimeout: () => Error | 'done' },
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const finish = (v: WaitVerdict) => {
      if (settled || v === 'wait') return;
      settled = true;
      unsubscribe();
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (v === 'done') resolve();
      else reject(v);
    };
    const onAbort = () => {
      const reason: unknown = opts.signal!.reason;
      finish(reason instanceof Error ? reason : new Error(String(reason)));
    };
    const unsubscribe = state.onInstanceChange((changed, row) => {
      if (changed === id) finish(judge(row));
    });
    const timer = setTimeout(() => finish(opts.onTimeout()), opts.timeoutMs);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    finish(judge(state.instances.get(id) ?? null));
  });
}

/** A start's verdict: running on its node is done; failed (or the row gone) fails the start with the node's reason. */
export function reportedRunning(nodeName: string): (i: Instance | null) => WaitVerdict {
  return (i) => {
    if (!i) return new EnjinError('instance_stopped', `the instance was removed while it was starting on ${nodeName}`, { status: 409 });
    if (i.desired !== 'running') return new EnjinError('instance_stopped', `instance ${i.id} was told to stop while it was starting on ${nodeName}`, { status: 409 });
    const c = i.current;
    if (!c || c.nodeId !== i.nodeId) return 'wait';
    // A task that did its work and finished (exit 0 under on-failure) before the wait saw it running started fine.
    if (c.state === 'running' || c.state === 'finished') return 'done';
    if (c.state === 'failed') return new EnjinError('instance_start_failed', `${i.service} ${i.id} failed to start on ${nodeName}: ${c.message ?? 'no reason given'}`, { status: 422 });
    return 'wait';
  };
}

/** A stop's verdict: done once the node's report removed the row. */
export function reportedRemoved(i: Instance | null): WaitVerdict {
  return i ? 'wait' : 'done';
}
