// The readiness gate: probes a freshly started process until it is ready, exits, runs out of time or is called off.
import { setTimeout as delay } from 'node:timers/promises';
import type { Driver } from './drivers/driver.ts';
import { httpProbe, listenerAmong, tcpProbe } from './probes.ts';
import type { Managed, Run } from './supervised-instance.ts';

export type Readiness = 'ready' | 'exited' | 'timeout' | 'cancelled';

export interface ReadinessTiming {
  /** how long an instance that does not listen must stay up to count as running */
  settleMs: number;
  /** pause between readiness probes */
  probeIntervalMs: number;
}

/** Waits until `run` of `m` is ready; 'cancelled' as soon as the instance's generation is no longer `gen`. */
export async function awaitReadiness(m: Managed, run: Run, gen: number, driver: Driver, timing: ReadinessTiming): Promise<Readiness> {
  const spec = m.spec;
  const signal = m.cancel.signal;
  const exited = run.exited.then(() => 'exited' as const);
  const pause = (ms: number): Promise<void> => delay(ms, undefined, { signal }).catch(() => undefined);
  if (!spec.listens) {
    const r = await Promise.race([exited, pause(timing.settleMs).then(() => 'ready' as const)]);
    if (gen !== m.gen) return 'cancelled';
    return run.exit ? 'exited' : r;
  }
  const deadline = Date.now() + spec.startTimeout * 1000;
  for (;;) {
    if (gen !== m.gen) return 'cancelled';
    if (run.exit) return 'exited';
    const left = deadline - Date.now();
    if (left <= 0) return 'timeout';
    const probeMs = Math.max(50, Math.min(2000, left));
    const ours = listenerAmong(await driver.processes(run.handle), m.port!) !== false;
    const ok = ours && (spec.healthPath ? await httpProbe('127.0.0.1', m.port!, spec.healthPath, probeMs) : await tcpProbe('127.0.0.1', m.port!, probeMs));
    if (gen !== m.gen) return 'cancelled';
    if (run.exit) return 'exited';
    if (ok) return 'ready';
    await Promise.race([exited, pause(Math.min(timing.probeIntervalMs, Math.max(0, deadline - Date.now())))]);
  }
}
