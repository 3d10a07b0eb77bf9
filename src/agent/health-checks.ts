// Health checks of running instances: the service's probe every `interval` after the readiness gate. A change of
// health is reported at once (the controller takes an unhealthy instance out of the routes: readiness); `retries`
// failures in a row hand the instance to the supervisor to restart (liveness). Failures within `grace` do not count.
import type { InstanceSpec } from '../core/messages.ts';
import type { HealthSpec } from '../core/model.ts';
import { healthOf } from '../core/service-policies.ts';
import { componentLogger } from '../log/logger.ts';
import type { ProbeCheck, ProbeOutcome } from './probe-runner.ts';
import type { Managed, Notify, Run } from './supervised-instance.ts';

const log = componentLogger('agent');

export type HealthCheck = NonNullable<ReturnType<typeof healthOf>>;

/**
 * The instance's health check with its timing filled in; null when it has none, or when its spec came from a
 * controller older than health checks (those only had a readiness gate, and get nothing more).
 */
export function healthCheckOf(spec: InstanceSpec): HealthCheck | null {
  if (spec.health === undefined || spec.health === null) return null;
  return healthOf({ health: spec.health as HealthSpec });
}

/** What the readiness gate probes: the health check, or for an older controller's spec its `healthPath` (TCP without). */
export function gateCheck(spec: InstanceSpec): ProbeCheck {
  if (spec.health !== undefined) return spec.health ?? {};
  return spec.healthPath ? { http: spec.healthPath } : {};
}

/** What the monitor needs of the supervisor. */
export interface HealthHost {
  /** runs the instance's probe once */
  probe(m: Managed, timeoutMs: number): Promise<ProbeOutcome>;
  /** records and reports a change of the instance */
  changed(m: Managed): void;
  logLine(m: Managed, line: string): void;
  notify: Notify;
  /** the run failed its liveness check: stop it and let the restart policy decide */
  livenessFailed(m: Managed, run: Run, why: string): void;
}

export class HealthMonitor {
  constructor(private readonly h: HealthHost) {}

  /**
   * `run` of `m` has just become 'running'. `gated`: it passed the readiness gate just now, with the check's own
   * probe (a listening service): it is healthy already. Otherwise (it does not listen, or was re-adopted) it is
   * 'starting' until a probe passes, unless the state file said how it was.
   */
  begin(m: Managed, run: Run, gated: boolean): void {
    this.stop(m);
    const check = healthCheckOf(m.spec);
    if (!check) {
      m.health = 'none';
      m.probe = null;
      return;
    }
    if (gated) m.health = m.spec.listens && m.probe?.ok ? 'healthy' : 'starting';
    else if (m.health === 'none') m.health = 'starting';
    this.schedule(m, run, check);
  }

  /** No more probes of the instance's current run. */
  stop(m: Managed): void {
    if (m.probeTimer) clearTimeout(m.probeTimer);
    m.probeTimer = null;
  }

  private schedule(m: Managed, run: Run, check: HealthCheck): void {
    const gen = m.gen;
    m.probeTimer = setTimeout(() => {
      m.probeTimer = null;
      this.probeOnce(m, run, gen, check).catch((err: unknown) => {
        // A probe that throws is a bug, not an unhealthy app: say so and keep checking.
        log.error({ err, instanceId: m.spec.instanceId }, 'a health probe failed to run');
        if (this.current(m, run, gen)) this.schedule(m, run, check);
      });
    }, check.interval * 1000);
  }

  private current(m: Managed, run: Run, gen: number): boolean {
    return gen === m.gen && m.run === run && m.state === 'running';
  }

  private async probeOnce(m: Managed, run: Run, gen: number, check: HealthCheck): Promise<void> {
    if (!this.current(m, run, gen)) return;
    const outcome = await this.h.probe(m, check.timeout * 1000);
    if (!this.current(m, run, gen)) return;
    const inGrace = Date.now() - run.startedAt < check.grace * 1000;
    const before = m.health;
    const failuresBefore = m.probe?.failures ?? 0;
    const failures = outcome.ok || inGrace ? 0 : failuresBefore + 1;
    m.probe = { ok: outcome.ok, at: new Date().toISOString(), durationMs: outcome.durationMs, output: outcome.output, failures };
    m.health = outcome.ok ? 'healthy' : inGrace ? 'starting' : 'unhealthy';
    const spec = m.spec;
    if (m.health !== before) {
      this.h.logLine(m, `health: ${m.health}${outcome.ok ? '' : ` (${outcome.output})`}`);
      this.h.changed(m);
    } else if (failures !== failuresBefore) {
      // Still unhealthy, one failure nearer a restart: worth telling (at most `retries` times), unlike each pass.
      this.h.changed(m);
    }
    // retries 0: the check decides routing only, it never restarts the instance.
    if (check.retries > 0 && failures >= check.retries) {
      const why = `failed ${failures} health check${failures === 1 ? '' : 's'} in a row (${outcome.output})`;
      this.h.notify({ kind: 'probe-failed', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `${spec.project}/${spec.service} instance ${spec.instanceId} ${why}; restarting it` });
      this.h.livenessFailed(m, run, why);
      return;
    }
    this.schedule(m, run, check);
  }
}
