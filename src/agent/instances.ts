// Instance supervision: start behind a readiness gate, keep alive with exponential backoff, stop, and re-adopt after an agent restart.
import { setTimeout as delay } from 'node:timers/promises';
import { EnjinError, invalid } from '../core/errors.ts';
import type { InstanceReport, InstanceSpec, Notification } from '../core/messages.ts';
import type { InstanceCurrent, InstanceState } from '../core/model.ts';
import type { AppAccounts } from './app-accounts.ts';
import type { Driver, TaskExit, TaskHandle } from './drivers/driver.ts';
import { loadLocalState, saveLocalState, type InstanceMode, type PersistedInstance } from './local-state.ts';
import type { InstanceLogs } from './instance-logs.ts';
import { tailLines } from './logs.ts';
import { portIsFree, type PortAllocator } from './ports.ts';
import { httpProbe, listenerAmong, tcpProbe } from './probes.ts';
import { checkId, type VersionStore } from './versions.ts';

export interface BackoffPolicy {
  /** first restart delay; doubles per consecutive failure */
  initialMs: number;
  maxMs: number;
  /** an instance that stayed up this long starts again from `initialMs` */
  resetAfterMs: number;
}

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
  statePath: string;
  /** environment every instance starts from (PATH, HOME, LANG, the agent's baseEnv) */
  baseEnv: Record<string, string>;
  backoff: BackoffPolicy;
  /** how long an instance that does not listen must stay up to count as running */
  settleMs: number;
  /** pause between readiness probes */
  probeIntervalMs: number;
  onChange: (instanceId: string) => void;
  onRemove: (instanceId: string) => void;
  notify: (n: Omit<Notification, 'at' | 'nodeId'>) => void;
}

/** One spawned process of an instance. */
interface Run {
  handle: TaskHandle;
  startedAt: number;
  exit: TaskExit | null;
  exited: Promise<TaskExit>;
  /** stops watching the process (it is stopped, or left running for the next agent) */
  unwatch: AbortController;
}

interface Managed {
  spec: InstanceSpec;
  mode: InstanceMode;
  state: InstanceState;
  port: number | null;
  restarts: number;
  lastExit: InstanceCurrent['lastExit'];
  message: string | null;
  run: Run | null;
  /** bumped whenever the agent changes course (stop, shutdown): async work of an older generation gives up */
  gen: number;
  cancel: AbortController;
  /** consecutive failed runs, for the backoff delay */
  failures: number;
  timer: NodeJS.Timeout | null;
  /** the start (or restart) under way */
  launching: Promise<void> | null;
  stopping: Promise<void> | null;
}

type Kind = 'rpc' | 'restart';

/** Checks a spec that arrived over the bus before any of it reaches the file system or a shell. */
export function checkSpec(spec: unknown): InstanceSpec {
  const s = spec as InstanceSpec;
  if (!s || typeof s !== 'object') throw invalid('start needs an instance spec');
  checkId('instance', s.instanceId);
  checkId('version', s.versionId);
  if (typeof s.command !== 'string' || !s.command.trim()) throw invalid(`instance ${s.instanceId} has no command`);
  for (const f of ['startTimeout', 'stopTimeout'] as const) {
    if (typeof s[f] !== 'number' || !(s[f] >= 0)) throw invalid(`instance ${s.instanceId}: ${f} must be a number of seconds`);
  }
  if (!s.env || typeof s.env !== 'object' || Object.values(s.env).some((v) => typeof v !== 'string')) {
    throw invalid(`instance ${s.instanceId}: env must map names to strings`);
  }
  return s;
}

export class Supervisor {
  private readonly o: SupervisorOptions;
  private readonly instances = new Map<string, Managed>();
  private closed = false;
  /** why the last write of the local state failed (disk full, read-only): null once a write succeeds again */
  private persistError: NodeJS.ErrnoException | null = null;

  constructor(o: SupervisorOptions) {
    this.o = o;
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
    return new Set([...this.instances.values()].map((m) => m.spec.versionId));
  }

  reports(): InstanceReport[] {
    return [...this.instances.values()].map((m) => this.toReport(m));
  }

  report(instanceId: string): InstanceReport | null {
    const m = this.instances.get(instanceId);
    return m ? this.toReport(m) : null;
  }

  private toReport(m: Managed): InstanceReport {
    return {
      instanceId: m.spec.instanceId,
      service: m.spec.service,
      project: m.spec.project,
      versionId: m.spec.versionId,
      desired: m.mode === 'stopping' ? 'stopped' : 'running',
      current: {
        state: m.state,
        nodeId: this.o.nodeId,
        pid: m.run?.handle.pid ?? null,
        host: m.port === null ? null : this.o.address,
        port: m.port,
        restarts: m.restarts,
        lastExit: m.lastExit,
        message: m.message,
        reportedAt: new Date().toISOString(),
      },
    };
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
    if (m && m.state === 'running') return this.toReport(m);
    if (m?.launching) {
      await m.launching;
      return this.toReport(m);
    }
    if (!this.o.versions.isPrepared(spec.versionId)) {
      throw new EnjinError('version_not_prepared', `version ${spec.versionId} is not prepared on node ${this.o.nodeId}; prepare it before starting instance ${id}`, { status: 409 });
    }
    if (m && m.state === 'backoff') {
      // It is being kept alive already: restart it now rather than after the backoff delay.
      m.restarts++;
      await this.launch(m, 'restart');
      return this.toReport(m);
    }
    if (!m) {
      m = {
        spec, mode: 'run', state: 'pending', port: null, restarts: 0, lastExit: null, message: null, run: null,
        gen: 0, cancel: new AbortController(), failures: 0, timer: null, launching: null, stopping: null,
      };
      this.instances.set(id, m);
    } else {
      // failed, or stopped by an agent shutdown: nothing runs, so the newest spec wins
      m.spec = spec;
      m.mode = 'run';
    }
    await this.launch(m, 'rpc');
    return this.toReport(m);
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
    this.touch(m);
    if (!this.o.versions.isPrepared(spec.versionId)) {
      // Retrying cannot help until someone prepares the version again.
      return this.fail(m, gen, 'rpc', new EnjinError('version_not_prepared', `version ${spec.versionId} is not prepared on node ${this.o.nodeId}`, { status: 409 }));
    }
    if (spec.listens) {
      let port = m.port;
      try {
        // A port can be taken behind our back while an instance is down; the router learns a new one from our state.
        if (port !== null && !(await portIsFree(port))) {
          this.o.ports.release(port, spec.instanceId);
          port = m.port = null;
        }
        if (port === null) port = await this.o.ports.allocate(spec.instanceId);
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
    if (this.persistError) {
      // A process the agent cannot record would be lost to a restart of the agent: start nothing until it can.
      return this.fail(m, gen, kind, this.stateUnwritable());
    }
    let handle: TaskHandle;
    try {
      const account = this.o.accounts.forProject(spec.project);
      const env: Record<string, string> = { ...this.o.baseEnv, HOME: account.home, ...spec.env };
      if (spec.listens && m.port !== null) env.PORT = String(m.port);
      this.logLine(m, `starting \`${spec.command}\`${env.PORT ? ` on port ${env.PORT}` : ''}`);
      const output = this.o.logs.open(spec.instanceId);
      handle = await this.o.driver.start({ id: spec.instanceId, command: spec.command, cwd: this.o.versions.path(spec.versionId), env, logPath: output, uid: account.uid, gid: account.gid });
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
    const outcome = await this.gate(m, run, gen);
    if (gen !== m.gen) throw this.cancelled(m);
    if (outcome === 'ready') {
      m.state = 'running';
      m.message = null;
      this.touch(m);
      return;
    }
    let reason: string;
    if (outcome === 'timeout') {
      reason = spec.listens
        ? `it was not ready within ${spec.startTimeout} s (${spec.healthPath ? `GET ${spec.healthPath} on port ${m.port} did not answer 2xx/3xx` : `nothing accepted connections on port ${m.port}`})`
        : `it did not stay up`;
    } else {
      reason = `it ${describeExit(run.exit!)} before it was ready`;
    }
    // Detach first, so the exit this kill causes is not taken for a crash.
    m.run = null;
    run.unwatch.abort();
    await this.o.driver.destroy(run.handle);
    if (gen !== m.gen) throw this.cancelled(m);
    await this.o.logs.settle(spec.instanceId);
    const tail = await tailLines(this.logPath(spec.instanceId));
    return this.fail(m, gen, kind, new EnjinError('instance_start_failed', `instance ${spec.instanceId} failed to start: ${reason}; last lines of its log:\n${tail}`, { status: 422 }), reason);
  }

  private async gate(m: Managed, run: Run, gen: number): Promise<'ready' | 'exited' | 'timeout' | 'cancelled'> {
    const spec = m.spec;
    const signal = m.cancel.signal;
    const exited = run.exited.then(() => 'exited' as const);
    const pause = (ms: number): Promise<void> => delay(ms, undefined, { signal }).catch(() => undefined);
    if (!spec.listens) {
      const r = await Promise.race([exited, pause(this.o.settleMs).then(() => 'ready' as const)]);
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
      const ours = listenerAmong(await this.o.driver.processes(run.handle), m.port!) !== false;
      const ok = ours && (spec.healthPath ? await httpProbe('127.0.0.1', m.port!, spec.healthPath, probeMs) : await tcpProbe('127.0.0.1', m.port!, probeMs));
      if (gen !== m.gen) return 'cancelled';
      if (run.exit) return 'exited';
      if (ok) return 'ready';
      await Promise.race([exited, pause(Math.min(this.o.probeIntervalMs, Math.max(0, deadline - Date.now())))]);
    }
  }

  /** A launch failed: a requested start leaves the instance 'failed'; a restart backs off and tries again. */
  private fail(m: Managed, gen: number, kind: Kind, err: Error, reason = err.message): never {
    if (gen !== m.gen) throw this.cancelled(m);
    const spec = m.spec;
    const notStartable = err instanceof EnjinError && err.code === 'version_not_prepared';
    this.o.notify({ kind: 'instance-failed', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `instance ${spec.instanceId} failed to start: ${reason}` });
    if (kind === 'rpc' || notStartable) {
      m.mode = 'failed';
      m.state = 'failed';
      m.message = reason;
      m.run = null;
      this.o.ports.release(m.port, spec.instanceId);
      m.port = null;
      this.touch(m);
    } else {
      m.message = reason;
      this.backoff(m, 0);
    }
    throw err;
  }

  // ---- keeping alive ----------------------------------------------------------------------------------------------

  /** The watched process of a run exited. Only a running instance's exit is a crash; other cases are handled where they happen. */
  private exited(m: Managed, run: Run, exit: TaskExit): void {
    if (m.run !== run || run.unwatch.signal.aborted) return;
    m.lastExit = { code: exit.code, signal: exit.signal, at: new Date().toISOString() };
    if (m.state !== 'running' || m.stopping || this.closed) return;
    const spec = m.spec;
    const how = describeExit(exit);
    this.logLine(m, how);
    this.o.notify({ kind: 'instance-exited', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `instance ${spec.instanceId} ${how}; restarting it` });
    m.message = `${how}`;
    m.run = null;
    run.unwatch.abort();
    const ranMs = Date.now() - run.startedAt;
    // Whatever it left in its process group (children holding the port) goes with it.
    void this.o.driver.destroy(run.handle).catch(() => {});
    this.backoff(m, ranMs);
  }

  private backoff(m: Managed, ranMs: number): void {
    const { initialMs, maxMs, resetAfterMs } = this.o.backoff;
    if (ranMs >= resetAfterMs) m.failures = 0;
    const wait = Math.min(initialMs * 2 ** m.failures, maxMs);
    m.failures++;
    m.state = 'backoff';
    m.run = null;
    this.touch(m);
    const gen = m.gen;
    m.timer = setTimeout(() => {
      m.timer = null;
      if (gen !== m.gen || this.closed) return;
      m.restarts++;
      void this.launch(m, 'restart');
    }, wait);
  }

  // ---- agent start and shutdown -------------------------------------------------------------------------------------

  /** Loads the persisted instances: re-adopts live processes, restarts dead ones, finishes interrupted stops. */
  async recover(): Promise<void> {
    const records = loadLocalState(this.o.statePath);
    for (const rec of records) {
      let spec: InstanceSpec;
      try {
        spec = checkSpec(rec.spec);
      } catch {
        continue; // a record we cannot trust is not worth a process
      }
      const m: Managed = {
        spec, mode: rec.mode, state: rec.state, port: rec.port ?? null, restarts: rec.restarts ?? 0, lastExit: rec.lastExit ?? null,
        message: rec.message ?? null, run: null, gen: 0, cancel: new AbortController(), failures: 0, timer: null, launching: null, stopping: null,
      };
      this.instances.set(spec.instanceId, m);
      if (m.port !== null) this.o.ports.claim(m.port, spec.instanceId);
      const alive = rec.handle ? await this.o.driver.recover(rec.handle) : false;
      if (alive && rec.mode !== 'failed') {
        try {
          // Its output waited in the FIFO (or blocked it) while no agent read: carry on reading.
          this.o.logs.open(spec.instanceId);
        } catch (err) {
          this.o.notify({ kind: 'info', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `the log of instance ${spec.instanceId} could not be reopened: ${(err as Error).message}` });
        }
      }
      if (rec.mode === 'stopping') {
        // The agent died while stopping it: finish the job.
        if (alive) this.watch(m, rec.handle!, Date.now());
        else if (rec.handle) void this.o.driver.destroy(rec.handle).catch(() => {});
        void this.stop(spec.instanceId);
      } else if (rec.mode === 'failed') {
        m.state = 'failed';
        if (alive) void this.o.driver.destroy(rec.handle!).catch(() => {});
      } else if (rec.mode === 'shutdown') {
        m.mode = 'run';
        if (alive) {
          this.adopt(m, rec);
        } else {
          void this.launch(m, 'restart');
        }
      } else if (alive) {
        this.adopt(m, rec);
      } else {
        // It died while nobody watched (or the agent died before it was ready): bring it back now.
        if (rec.handle) {
          m.lastExit = { code: null, signal: null, at: new Date().toISOString() };
          m.message = 'exited while the agent was not running';
          this.o.notify({ kind: 'instance-exited', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `instance ${spec.instanceId} exited while the agent was not running; restarting it` });
          m.restarts++;
        }
        void this.launch(m, 'restart');
      }
    }
    this.persist();
  }

  private adopt(m: Managed, rec: PersistedInstance): void {
    const run = this.watch(m, rec.handle!, Date.now());
    if (rec.state === 'running') {
      m.state = 'running';
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
    const stops: Promise<void>[] = [];
    for (const m of this.instances.values()) {
      this.changeCourse(m);
      const run = m.run;
      if (!stopInstances) {
        run?.unwatch.abort();
        continue;
      }
      if (m.mode !== 'run' && m.mode !== 'shutdown') continue;
      m.mode = 'shutdown';
      if (!run) {
        m.state = 'stopped';
        continue;
      }
      m.state = 'stopping';
      stops.push(
        this.o.driver.stop(run.handle, { timeoutMs: m.spec.stopTimeout * 1000 }).then(() => {
          run.unwatch.abort();
          m.run = null;
          m.state = 'stopped';
          this.logLine(m, 'stopped (agent shutdown)');
          this.touch(m);
        }),
      );
    }
    this.persist();
    await Promise.all(stops);
    // Stops requested before the shutdown finish as asked.
    await Promise.all([...this.instances.values()].map((m) => m.stopping).filter(Boolean));
    this.persist();
    // Stopped instances' last output is drained; running ones keep theirs in the FIFO for the next agent.
    await this.o.logs.closeAll(stopInstances);
  }

  // ---- bookkeeping ------------------------------------------------------------------------------------------------

  /** Cancels whatever the instance was doing (a readiness wait, a backoff timer) before it does something else. */
  private changeCourse(m: Managed): void {
    m.gen++;
    m.cancel.abort();
    m.cancel = new AbortController();
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
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

  /**
   * Writes the local state. A failure (disk full) is reported, not thrown: the change stands in memory, the
   * controller still hears of it, and the next change writes everything again. Starts wait until a write succeeds.
   */
  private persist(): void {
    try {
      this.writeState();
      if (this.persistError) this.o.notify({ kind: 'info', message: `the agent on node ${this.o.nodeId} can write its state again` });
      this.persistError = null;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (this.persistError?.code !== e.code) this.o.notify({ kind: 'info', message: `${this.stateUnwritable(e).message}` });
      this.persistError = e;
    }
  }

  private stateUnwritable(err = this.persistError!): EnjinError {
    const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
    return new EnjinError(full ? 'node_disk_full' : 'agent_state_unwritable', `the agent on node ${this.o.nodeId} cannot record its instances (${err.code ?? 'error'}: ${err.message})${full ? '; free space on the node' : '; check its data directory'}, and starts nothing until it can`, { status: 507 });
  }

  private writeState(): void {
    const records: PersistedInstance[] = [...this.instances.values()].map((m) => ({
      spec: m.spec,
      mode: m.mode,
      state: m.state,
      handle: m.run?.handle ?? null,
      port: m.port,
      restarts: m.restarts,
      lastExit: m.lastExit,
      message: m.message,
    }));
    saveLocalState(this.o.statePath, records);
  }

  /** A line from the agent in the instance's own log, so its history reads in one place. */
  private logLine(m: Managed, line: string): void {
    this.o.logs.line(m.spec.instanceId, `[enjin ${new Date().toISOString()}] ${line}\n`);
  }
}

function describeExit(exit: TaskExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : exit.code === null ? 'exited' : `exited with code ${exit.code}`;
  // The kernel may have killed a child (the shell then exits 137): say why either way.
  return exit.oomKilled ? `${how}: out of memory (the kernel killed a process of it over the instance's memory limit)` : how;
}
