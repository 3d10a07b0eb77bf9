// Keeping instances alive under their service's restart policy: a run that ended on its own (an exit, a failed
// liveness check, a restart that did not get ready) is restarted after a backoff, finished, or given up on, with a
// notification either way. The decision itself is restart-policy.ts (pure); this applies it.
import { restartOf } from '../core/service-policies.ts';
import { componentLogger } from '../log/logger.ts';
import type { Driver, TaskExit } from './drivers/driver.ts';
import type { InstanceLogs } from './instance-logs.ts';
import { tailLines } from './logs.ts';
import type { PortAllocator } from './ports.ts';
import type { BackoffPolicy } from './restart-backoff.ts';
import { decideRestart, type RunEnd } from './restart-policy.ts';
import { describeExit, type Managed, type Notify, type Run } from './supervised-instance.ts';

const log = componentLogger('agent');

/** What applying a restart decision needs of the supervisor. */
export interface RestartHost {
  driver: Driver;
  logs: InstanceLogs;
  ports: PortAllocator;
  notify: Notify;
  /** the agent's backoff override (tests, operators): wins over the services' own backoff field by field */
  backoffOverride?: Partial<BackoffPolicy>;
  logPath(instanceId: string): string;
  /** records and reports a change of the instance */
  touch(m: Managed): void;
  logLine(m: Managed, line: string): void;
  /** starts the instance again; its failure comes back through launchFailed */
  relaunch(m: Managed): void;
  /** the agent is shutting down: nothing is restarted */
  closing(): boolean;
}

const name = (m: Managed): string => `${m.spec.project}/${m.spec.service} instance ${m.spec.instanceId}`;

export class InstanceRestarts {
  constructor(private readonly h: RestartHost) {}

  /** The watched process of a running instance exited by itself. */
  exited(m: Managed, run: Run, exit: TaskExit): void {
    const how = describeExit(exit);
    this.h.logLine(m, how);
    m.message = how;
    m.run = null;
    run.unwatch.abort();
    // Whatever it left in its process group (children holding the port) goes with it.
    void this.h.driver.destroy(run.handle).catch((err: unknown) => log.warn({ err, instanceId: m.spec.instanceId }, 'could not clean up after an exited instance'));
    void this.apply(m, { kind: 'exit', code: exit.code, signal: exit.signal, how }, Date.now() - run.startedAt);
  }

  /** The running instance failed its liveness check `retries` times: stopped, then the policy decides. */
  async livenessFailed(m: Managed, run: Run, why: string): Promise<void> {
    const gen = m.gen;
    this.h.logLine(m, `${why}; stopping it`);
    // Detach first, so the exit this stop causes is not taken for a crash of its own.
    m.run = null;
    run.unwatch.abort();
    m.message = why;
    await this.h.driver.stop(run.handle, { timeoutMs: m.spec.stopTimeout * 1000 });
    m.lastExit = { code: null, signal: 'SIGTERM', at: new Date().toISOString() };
    if (gen !== m.gen) return;
    await this.apply(m, { kind: 'liveness', how: why }, Date.now() - run.startedAt);
  }

  /** A restart the agent made did not get ready (the run is already gone). */
  launchFailed(m: Managed, reason: string): void {
    void this.apply(m, { kind: 'start-failed', how: `it failed to start: ${reason}` }, 0);
  }

  private async apply(m: Managed, end: RunEnd, ranMs: number): Promise<void> {
    const gen = m.gen;
    if (this.h.closing()) return;
    const spec = m.spec;
    const policy = restartOf({ restart: spec.restart, listens: spec.listens });
    const d = decideRestart(policy, end, m.history, ranMs, Date.now(), this.h.backoffOverride);
    m.health = 'none';
    if (d.action === 'restart') {
      m.history = d.history;
      m.state = 'backoff';
      m.message = end.how;
      this.h.touch(m);
      const wait = d.waitMs >= 1000 ? `${Math.round(d.waitMs / 100) / 10} s` : `${d.waitMs} ms`;
      if (end.kind !== 'liveness') this.h.notify({ kind: 'instance-exited', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `${name(m)} ${end.how}; restarting it in ${wait}` });
      m.timer = setTimeout(() => {
        m.timer = null;
        if (gen !== m.gen || this.h.closing()) return;
        m.restarts++;
        this.h.relaunch(m);
      }, d.waitMs);
      return;
    }
    this.h.ports.release(m.port, spec.instanceId);
    m.port = null;
    if (d.action === 'finish') {
      m.mode = 'finished';
      m.state = 'finished';
      m.message = d.reason;
      this.h.logLine(m, d.reason);
      this.h.touch(m);
      this.h.notify({ kind: 'instance-exited', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `${name(m)} ${d.reason}; it is not restarted` });
      return;
    }
    // Given up: mark it failed at once (so nothing restarts it), then add what its log says for people.
    m.mode = 'failed';
    m.state = 'failed';
    m.message = d.reason;
    this.h.logLine(m, `${d.reason}; marked failed`);
    this.h.touch(m);
    await this.h.logs.settle(spec.instanceId);
    const tail = await tailLines(this.h.logPath(spec.instanceId)).catch((err: unknown) => `(its log could not be read: ${(err as Error).message})`);
    if (gen !== m.gen) return;
    m.message = `${d.reason}; last lines of its log:\n${tail}`;
    this.h.touch(m);
    this.h.notify({ kind: 'instance-failed', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `${name(m)} ${m.message}` });
  }
}
