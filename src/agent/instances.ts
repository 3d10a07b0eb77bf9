// Instance supervision: start behind a readiness gate, check health, keep alive under the restart policy, stop, and
// hand over across agent restarts.
import { EnjinError } from '../core/errors.ts';
import type { InstanceReport } from '../core/messages.ts';
import type { AppAccounts } from './app-accounts.ts';
import type { Driver, TaskExit, TaskHandle } from './drivers/driver.ts';
import type { InstanceLogs } from './instance-logs.ts';
import { buildOf, checkSpec } from './instance-spec.ts';
import { InstanceStateFile } from './instance-state-file.ts';
import type { PersistedInstance } from './local-state.ts';
import { tailLines } from './logs.ts';
import type { PortAllocator } from './ports.ts';
import type { BackoffPolicy } from './restart-backoff.ts';
import { awaitReadiness } from './readiness.ts';
import { readopt } from './readoption.ts';
import { newManaged, toReport, type Kind, type Managed, type Notify, type Run } from './supervised-instance.ts';
import { HealthMonitor } from './health-checks.ts';
import { probeInstance, runEnvOf } from './instance-env.ts';
import { InstanceRestarts } from './restarts.ts';
import { whyNotReady } from './start-failure.ts';
import { shutdownInstances } from './instance-shutdown.ts';
import { checkId, type VersionStore } from './versions.ts';
import type { VolumeStore } from './volumes.ts';

export interface SupervisorOptions {
  nodeId: string;
  address: string;
  driver: Driver;
  ports: PortAllocator;
  versions: VersionStore;
  /** the instances' FIFOs and capped log files */
  logs: InstanceLogs;
  /** who instances run as, and their HOME */
  accounts: AppAccounts;
  /** makes the volume directories an instance uses and gives their variables; absent: volumes are refused */
  volumes?: Pick<VolumeStore, 'ensure'>;
  statePath: string;
  /** environment every instance starts from (PATH, HOME, LANG, the agent's baseEnv) */
  baseEnv: Record<string, string>;
  /** overrides the services' restart backoff field by field (tests); absent: each service's own */
  backoff?: Partial<BackoffPolicy>;
  /** how long an instance that does not listen must stay up to count as running */
  settleMs: number;
  /** pause between readiness probes */
  probeIntervalMs: number;
  onChange: (instanceId: string) => void;
  onRemove: (instanceId: string) => void;
  notify: Notify;
}

export class Supervisor {
  private readonly o: SupervisorOptions;
  private readonly instances = new Map<string, Managed>();
  private closed = false;
  private readonly stateFile: InstanceStateFile;
  private readonly health: HealthMonitor;
  private readonly restarts: InstanceRestarts;

  constructor(o: SupervisorOptions) {
    this.o = o;
    this.stateFile = new InstanceStateFile(o.statePath, o.nodeId, (n) => o.notify(n));
    this.health = new HealthMonitor({
      probe: (m, timeoutMs) => probeInstance(this.o, m, timeoutMs),
      changed: (m) => this.touch(m),
      logLine: (m, line) => this.logLine(m, line),
      notify: (n) => o.notify(n),
      livenessFailed: (m, run, why) => void this.restarts.livenessFailed(m, run, why).catch((err: unknown) => this.o.notify({ kind: 'info', instanceId: m.spec.instanceId, project: m.spec.project, service: m.spec.service, message: `instance ${m.spec.instanceId} failed its health checks and could not be stopped: ${(err as Error).message}` })),
    });
    this.restarts = new InstanceRestarts({
      driver: o.driver, logs: o.logs, ports: o.ports, notify: (n) => o.notify(n), backoffOverride: o.backoff,
      logPath: (id) => this.logPath(id),
      touch: (m) => this.touch(m),
      logLine: (m, line) => this.logLine(m, line),
      relaunch: (m) => void this.launch(m, 'restart'),
      closing: () => this.closed,
    });
  }

  logPath(instanceId: string): string {
    return this.o.logs.logPath(checkId('instance', instanceId));
  }

  has(instanceId: string): boolean {
    return this.instances.has(instanceId);
  }

  ids(): string[] {
    return [...this.instances.keys()];
  }

  versionsInUse(): Set<string> {
    return new Set([...this.instances.values()].map((m) => buildOf(m.spec)));
  }

  reports(): InstanceReport[] {
    return [...this.instances.values()].map((m) => this.reportOf(m));
  }

  report(instanceId: string): InstanceReport | null {
    const m = this.instances.get(instanceId);
    return m ? this.reportOf(m) : null;
  }

  private reportOf(m: Managed): InstanceReport {
    return toReport(m, this.o.nodeId, this.o.address);
  }

  // ---- requests -------------------------------------------------------------------------------------------------

  /** Starts an instance, or joins/confirms the one already known; resolves once it is running. */
  async start(input: unknown): Promise<InstanceReport> {
    const spec = checkSpec(input);
    const id = spec.instanceId;
    let m = this.instances.get(id);
    if (m?.stopping) {
      await m.stopping;
      m = this.instances.get(id);
    }
    if (m && m.state === 'running') return this.reportOf(m);
    if (m?.launching) {
      await m.launching;
      return this.reportOf(m);
    }
    if (!this.o.versions.isPrepared(buildOf(spec))) {
      throw new EnjinError('version_not_prepared', `version ${buildOf(spec)} is not prepared on node ${this.o.nodeId}; prepare it before starting instance ${id}`, { status: 409 });
    }
    if (m && m.state === 'backoff') {
      // It is being kept alive already: restart it now rather than after the backoff delay.
      m.restarts++;
      await this.launch(m, 'restart');
      return this.reportOf(m);
    }
    if (!m) {
      m = newManaged(spec);
      this.instances.set(id, m);
    } else {
      // failed, finished, or stopped by an agent shutdown: nothing runs, so the newest spec wins, and whoever asked
      // for the start gets a fresh count of restarts against the policy
      m.spec = spec;
      m.mode = 'run';
      m.history = { attempts: [], streak: 0 };
    }
    await this.launch(m, 'rpc');
    return this.reportOf(m);
  }

  /** Stops an instance (SIGTERM, SIGKILL after its stopTimeout) and forgets it. Unknown ids are already stopped. */
  stop(instanceId: string): Promise<void> {
    const m = this.instances.get(instanceId);
    if (!m) return Promise.resolve();
    if (m.stopping) return m.stopping;
    const stopping = (async () => {
      this.changeCourse(m);
      m.mode = 'stopping';
      m.state = 'stopping';
      this.touch(m);
      const run = m.run;
      if (run) {
        await this.o.driver.stop(run.handle, { timeoutMs: m.spec.stopTimeout * 1000 });
        run.unwatch.abort();
        this.logLine(m, 'stopped');
      }
      // Its processes are gone: what they wrote last reaches the log before the FIFO goes.
      await this.o.logs.close(instanceId, { drain: true, remove: true });
      this.instances.delete(instanceId);
      this.o.ports.release(m.port, instanceId);
      this.persist();
      this.o.onRemove(instanceId);
    })();
    // A stop that failed half-way may be asked again: it must not answer with the old failure for ever.
    m.stopping = stopping.catch((err: unknown) => {
      if (m.stopping === guarded) m.stopping = null;
      throw err;
    });
    const guarded = m.stopping;
    return guarded;
  }

  // ---- starting ---------------------------------------------------------------------------------------------------

  /**
   * Spawns the instance and waits for readiness. On failure the instance is left 'failed' (a requested start) or in
   * 'backoff' (a restart the agent does by itself), and the promise rejects with the reason.
   */
  private launch(m: Managed, kind: Kind): Promise<void> {
    const p = this.doLaunch(m, kind).finally(() => {
      if (m.launching === p) m.launching = null;
    });
    m.launching = p;
    // Restarts are nobody's request: their failures are handled (backoff), not thrown at anyone.
    p.catch(() => {});
    return p;
  }

  private async doLaunch(m: Managed, kind: Kind): Promise<void> {
    this.changeCourse(m);
    const gen = m.gen;
    const spec = m.spec;
    m.state = 'starting';
    m.message = null;
    m.probe = null;
    m.health = spec.health ? 'starting' : 'none';
    this.touch(m);
    if (!this.o.versions.isPrepared(buildOf(spec))) {
      // Retrying cannot help until someone prepares the version again.
      return this.fail(m, gen, 'rpc', new EnjinError('version_not_prepared', `version ${buildOf(spec)} is not prepared on node ${this.o.nodeId}`, { status: 409 }));
    }
    if (spec.listens) {
      let port: number;
      try {
        port = await this.o.ports.forLaunch(spec.instanceId, m.port);
      } catch (err) {
        return this.fail(m, gen, kind, err as Error);
      }
      if (gen !== m.gen) {
        // Stopped meanwhile: whoever stopped it has already released what it knew of.
        if (port !== m.port) this.o.ports.release(port, spec.instanceId);
        throw this.cancelled(m);
      }
      m.port = port;
    }
    const unwritable = this.stateFile.unwritable();
    if (unwritable) {
      // A process the agent cannot record would be lost to a restart of the agent: start nothing until it can.
      return this.fail(m, gen, kind, unwritable);
    }
    let handle: TaskHandle;
    try {
      const { account, versionDir, env } = runEnvOf(this.o, m);
      this.logLine(m, `starting \`${spec.command}\`${env.PORT ? ` on port ${env.PORT}` : ''}`);
      const output = this.o.logs.open(spec.instanceId);
      handle = await this.o.driver.start({ id: spec.instanceId, command: spec.command, cwd: versionDir, env, logPath: output, uid: account.uid, gid: account.gid });
    } catch (err) {
      return this.fail(m, gen, kind, err as Error);
    }
    if (gen !== m.gen) {
      await this.o.driver.destroy(handle);
      throw this.cancelled(m);
    }
    const run = this.watch(m, handle, Date.now());
    this.touch(m); // the pid is on disk before anything else can happen
    await this.settle(m, run, gen, kind);
  }

  /** Starts watching a process of `m` (a child or a re-adopted one). */
  private watch(m: Managed, handle: TaskHandle, startedAt: number): Run {
    const unwatch = new AbortController();
    const run: Run = { handle, startedAt, exit: null, exited: null as unknown as Promise<TaskExit>, unwatch };
    run.exited = this.o.driver.wait(handle, unwatch.signal).then((exit) => {
      run.exit = exit;
      this.exited(m, run, exit);
      return exit;
    });
    m.run = run;
    return run;
  }

  /** The readiness gate of one run: 'running' when it passes, else the run is killed and the launch fails. */
  private async settle(m: Managed, run: Run, gen: number, kind: Kind): Promise<void> {
    const spec = m.spec;
    const outcome = await awaitReadiness(m, run, gen, this.o.driver, this.o, (x, timeoutMs) => probeInstance(this.o, x, timeoutMs));
    if (outcome === 'cancelled' || gen !== m.gen) throw this.cancelled(m);
    if (outcome === 'ready') {
      m.state = 'running';
      m.message = null;
      this.health.begin(m, run, true);
      this.touch(m);
      return;
    }
    const reason = await whyNotReady(m, run, outcome, this.o.driver);
    if (gen !== m.gen) throw this.cancelled(m);
    // Detach first, so the exit this kill causes is not taken for a crash.
    m.run = null;
    run.unwatch.abort();
    await this.o.driver.destroy(run.handle);
    if (gen !== m.gen) throw this.cancelled(m);
    await this.o.logs.settle(spec.instanceId);
    const tail = await tailLines(this.logPath(spec.instanceId));
    return this.fail(m, gen, kind, new EnjinError('instance_start_failed', `instance ${spec.instanceId} failed to start: ${reason}; last lines of its log:\n${tail}`, { status: 422 }), reason);
  }

  /** A launch failed: a requested start leaves the instance 'failed'; a restart goes by the restart policy. */
  private fail(m: Managed, gen: number, kind: Kind, err: Error, reason = err.message): never {
    if (gen !== m.gen) throw this.cancelled(m);
    const spec = m.spec;
    const notStartable = err instanceof EnjinError && err.code === 'version_not_prepared';
    if (kind === 'rpc' || notStartable) {
      this.o.notify({ kind: 'instance-failed', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `instance ${spec.instanceId} failed to start: ${reason}` });
      m.mode = 'failed';
      m.state = 'failed';
      m.message = reason;
      m.run = null;
      this.o.ports.release(m.port, spec.instanceId);
      m.port = null;
      this.touch(m);
    } else {
      m.run = null;
      this.restarts.launchFailed(m, reason);
    }
    throw err;
  }

  // ---- keeping alive ----------------------------------------------------------------------------------------------

  /** The watched process of a run exited. Only a running instance's exit is a crash; other cases are handled where they happen. */
  private exited(m: Managed, run: Run, exit: TaskExit): void {
    if (m.run !== run || run.unwatch.signal.aborted) return;
    m.lastExit = { code: exit.code, signal: exit.signal, at: new Date().toISOString(), ...(exit.oomKilled ? { oomKilled: true } : {}) };
    if (m.state !== 'running' || m.stopping || this.closed) return;
    this.health.stop(m);
    this.restarts.exited(m, run, exit);
  }

  // ---- agent start and shutdown -------------------------------------------------------------------------------------

  /** Loads the persisted instances: re-adopts live processes, restarts dead ones, finishes interrupted stops. */
  async recover(): Promise<void> {
    await readopt(this.stateFile.load(), {
      driver: this.o.driver,
      logs: this.o.logs,
      ports: this.o.ports,
      notify: (n) => this.o.notify(n),
      add: (m) => this.instances.set(m.spec.instanceId, m),
      watch: (m, handle) => this.watch(m, handle, Date.now()),
      adopt: (m, rec) => this.adopt(m, rec),
      restart: (m) => void this.launch(m, 'restart'),
      stop: (instanceId) => void this.stop(instanceId),
    });
    this.persist();
  }

  private adopt(m: Managed, rec: PersistedInstance): void {
    const run = this.watch(m, rec.handle!, Date.now());
    if (rec.state === 'running') {
      m.state = 'running';
      this.health.begin(m, run, false);
      this.touch(m);
      return;
    }
    // It had not passed its readiness gate when the agent went away: gate it again.
    m.state = 'starting';
    this.touch(m);
    const gen = m.gen;
    const p = this.settle(m, run, gen, 'restart').finally(() => {
      if (m.launching === p) m.launching = null;
    });
    p.catch(() => {});
    m.launching = p;
  }

  /**
   * Agent shutdown. stopInstances: stop them all and remember to start them again next time. Otherwise leave them
   * running, exactly as a crash would, for the next agent to re-adopt.
   */
  async shutdown(stopInstances: boolean): Promise<void> {
    this.closed = true;
    await shutdownInstances([...this.instances.values()], stopInstances, {
      driver: this.o.driver,
      logs: this.o.logs,
      changeCourse: (m) => this.changeCourse(m),
      logLine: (m, line) => this.logLine(m, line),
      touch: (m) => this.touch(m),
      persist: () => this.persist(),
    });
  }

  // ---- bookkeeping ------------------------------------------------------------------------------------------------

  /** Cancels whatever the instance was doing (a readiness wait, a backoff timer) before it does something else. */
  private changeCourse(m: Managed): void {
    m.gen++;
    m.cancel.abort();
    m.cancel = new AbortController();
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
    this.health.stop(m);
  }

  private cancelled(m: Managed): EnjinError {
    return this.closed
      ? new EnjinError('agent_stopping', `the agent on node ${this.o.nodeId} is shutting down; instance ${m.spec.instanceId} was left for its next start`, { status: 503 })
      : new EnjinError('instance_stopped', `instance ${m.spec.instanceId} was stopped while it was starting`, { status: 409 });
  }

  /** Records a change: on disk at once, and to the controller. */
  private touch(m: Managed): void {
    this.persist();
    if (this.instances.get(m.spec.instanceId) === m) this.o.onChange(m.spec.instanceId);
  }

  private persist(): void {
    this.stateFile.save(this.instances.values());
  }

  /** A line from the agent in the instance's own log, so its history reads in one place. */
  private logLine(m: Managed, line: string): void {
    this.o.logs.line(m.spec.instanceId, `[enjin] ${line}\n`);
  }
}
