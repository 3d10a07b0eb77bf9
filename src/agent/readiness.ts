// The readiness gate: probes a freshly started process until it is ready, exits, runs out of time or is called off.
// A listening instance is ready when its own process holds the port and the service's health probe passes (a TCP
// connect without one); one that does not listen is ready once it stayed up for a moment.
import { setTimeout as delay } from 'node:timers/promises';
import type { Driver } from './drivers/driver.ts';
import { gateCheck, healthCheckOf } from './health-checks.ts';
import type { ProbeOutcome } from './probe-runner.ts';
import { listenerAmong } from './listening-ports.ts';
import type { Managed, Run } from './supervised-instance.ts';

export type Readiness = 'ready' | 'exited' | 'timeout' | 'cancelled';

export interface ReadinessTiming {
  /** how long an instance that does not listen must stay up to count as running */
  settleMs: number;
  /** pause between readiness probes */
  probeIntervalMs: number;
}

/** Runs the gate's probe of `m` once, bounded by `timeoutMs`. */
export type GateProbe = (m: Managed, timeoutMs: number) => Promise<ProbeOutcome>;

/** Waits until `run` of `m` is ready; 'cancelled' as soon as the instance's generation is no longer `gen`. */
export async function awaitReadiness(m: Managed, run: Run, gen: number, driver: Driver, timing: ReadinessTiming, probe: GateProbe): Promise<Readiness> {
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
  const probeTimeoutMs = (healthCheckOf(spec)?.timeout ?? 2) * 1000;
  const check = gateCheck(spec);
  for (;;) {
    if (gen !== m.gen) return 'cancelled';
    if (run.exit) return 'exited';
    const left = deadline - Date.now();
    if (left <= 0) return 'timeout';
    const ours = listenerAmong(await driver.processes(run.handle), m.port!) !== false;
    const outcome = ours ? await probe(m, Math.max(50, Math.min(probeTimeoutMs, left))) : null;
    if (gen !== m.gen) return 'cancelled';
    if (run.exit) return 'exited';
    if (outcome) {
      m.probe = { ok: outcome.ok, at: new Date().toISOString(), durationMs: outcome.durationMs, output: outcome.output, failures: outcome.ok ? 0 : (m.probe?.failures ?? 0) + 1 };
    } else {
      m.probe = { ok: false, at: new Date().toISOString(), durationMs: 0, output: `no process of the instance listens on port ${m.port}${check.http ? ` (GET ${check.http} not tried)` : ''}`, failures: (m.probe?.failures ?? 0) + 1 };
    }
    if (outcome?.ok) return 'ready';
    await Promise.race([exited, pause(Math.min(timing.probeIntervalMs, Math.max(0, deadline - Date.now())))]);
  }
}
