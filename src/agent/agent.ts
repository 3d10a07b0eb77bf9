// The agent: one per node; answers the controller's requests on the bus, supervises instances, and reports the node's state.
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { componentLogger } from '../log/logger.ts';
import type { Bus, Subscription } from '../bus/bus.ts';
import { invalid, nodeDiskFull, notFound } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceReport, type NodeInfo, type NodeStateUpdate, type Notification } from '../core/messages.ts';
import type { NodeDisk } from '../core/model.ts';
import { AppAccounts, appsDirFor } from './app-accounts.ts';
import type { Driver } from './drivers/driver.ts';
import { ProcessDriver } from './drivers/process.ts';
import { Supervisor } from './instances.ts';
import type { BackoffPolicy } from './restart-backoff.ts';
import { InstanceLogs } from './instance-logs.ts';
import { LogPump } from './log-pump.ts';
import { readLog } from './logs.ts';
import { PortAllocator } from './ports.ts';
import { checkId, VersionStore } from './versions.ts';

const LOG_RETENTION_MS = 7 * 24 * 3600_000;

/** The agent's own log, on stderr (stdout of `enjin up` is its machine-readable output). */
const log = componentLogger('agent');

export interface AgentOptions {
  nodeId: string;
  name: string;
  bus: Bus;
  /** the agent's own directory, e.g. DATA/agent */
  dataDir: string;
  /** address routers use to reach instances, default '127.0.0.1' */
  address?: string;
  /** default [20000, 29999] */
  portRange?: [number, number];
  /**
   * total cap of one instance's (or one prepare's) log on disk: the live file and one rotated file, each at most half.
   * Default 10 MiB, the footprint of the former default (5 MiB live, rotated at 5 MiB with one old copy kept).
   */
  logMaxBytes?: number;
  /** the most one instance (or prepare command) may log per second; beyond it its writes block. Default 4 MiB */
  logRateBytes?: number;
  /**
   * below this much free space on the disk of dataDir the agent warns and refuses new versions, and the controller
   * places nothing new here. Default 1 GiB: room for one more version and its prepare (an npm ci is hundreds of MB)
   * while logs are capped per instance; an absolute figure, because a percentage is needlessly strict on a large disk.
   */
  minFreeDiskBytes?: number;
  /** default 15000 */
  heartbeatMs?: number;
  /** env given to every instance and prepare command on top of PATH, HOME and LANG (which come from the agent) */
  baseEnv?: Record<string, string>;
  labels?: Record<string, string>;
  /** restart delays, default 1 s doubling to 60 s, reset after 30 s up */
  backoff?: Partial<BackoffPolicy>;
  /** how long an instance that does not listen must stay up to be running, default 1000 */
  settleMs?: number;
  /** pause between readiness probes, default 250 */
  probeIntervalMs?: number;
  driver?: Driver;
}

export class Agent {
  private readonly o: AgentOptions;
  private readonly node: NodeInfo;
  private readonly driver: Driver;
  private readonly versions: VersionStore;
  private readonly logsDir: string;
  private readonly logPump: LogPump;
  private readonly logs: InstanceLogs;
  private readonly baseEnv: Record<string, string>;
  private readonly accounts: AppAccounts;
  /** where version directories and apps' HOMEs live (the agent's directory unless apps cannot pass through to it) */
  private readonly appsDir: string;
  private readonly versionsDir: string;
  /** things the operator should know, one line each (e.g. apps' files kept outside the data directory) */
  readonly notices: string[] = [];
  private supervisor: Supervisor | null = null;
  private subs: Subscription[] = [];
  private timers: NodeJS.Timeout[] = [];
  private running = false;
  // state exchange
  private incarnation = '';
  private seq = 0;
  /** nothing is published before the first full (seq 0) update */
  private publishing = false;
  private changed = new Set<string>();
  private removed = new Set<string>();
  private flushScheduled = false;

  constructor(o: AgentOptions) {
    this.o = o;
    // The node id is a token of bus subjects: no dots, no wildcards.
    if (checkId('node', o.nodeId).includes('.')) throw invalid(`node id ${o.nodeId} must not contain '.'`);
    this.node = { nodeId: o.nodeId, name: o.name, address: o.address ?? '127.0.0.1', labels: o.labels ?? {} };
    this.driver = o.driver ?? new ProcessDriver();
    this.logsDir = join(o.dataDir, 'logs');
    // Instances see a chosen environment, never the agent's own (it may hold credentials).
    this.baseEnv = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? o.dataDir,
      LANG: process.env.LANG ?? 'C.UTF-8',
      ...(o.baseEnv ?? {}),
    };
    const logMaxBytes = o.logMaxBytes ?? 10 * 1024 * 1024;
    this.logPump = new LogPump(o.logRateBytes ?? 4 * 1024 * 1024);
    this.logs = new InstanceLogs({
      dir: this.logsDir,
      maxBytes: logMaxBytes,
      pump: this.logPump,
      onError: (instanceId, err) => this.notify({ kind: 'info', instanceId, message: `the log of instance ${instanceId} cannot be written (${err.code ?? err.message}); its output is dropped until it can` }),
    });
    this.appsDir = appsDirFor(o.dataDir);
    if (this.appsDir !== o.dataDir) this.notices.push(`apps cannot pass through a directory above ${o.dataDir}: their versions and HOMEs are kept in ${this.appsDir}`);
    this.versionsDir = join(this.appsDir, 'versions');
    this.accounts = new AppAccounts(join(this.appsDir, 'homes'), this.baseEnv.HOME);
    this.versions = new VersionStore(this.versionsDir, () => this.baseEnv, { pump: this.logPump, logMaxBytes }, this.driver, this.accounts);
  }

  async start(): Promise<void> {
    if (this.running) return;
    const o = this.o;
    await this.accounts.init();
    // Private to the agent, except that an app user must pass through to its own version directory (which is its
    // own and private); logs, state and prepare logs stay the agent's.
    const pass = this.accounts.separate ? 0o711 : 0o700;
    const dirs: Array<[string, number]> = [[o.dataDir, pass], [this.logsDir, 0o700], [this.appsDir, pass], [this.versionsDir, pass]];
    if (this.appsDir !== o.dataDir) dirs.unshift([dirname(this.appsDir), pass]);
    for (const [d, mode] of dirs) {
      mkdirSync(d, { recursive: true, mode });
      chmodSync(d, mode);
    }
    this.accounts.checkReachable(this.versionsDir);
    // Node looks up the directory tree for the nearest package.json to decide how to load an app's .js files: without
    // one here, an app with none of its own would take on whatever project happens to hold the data directory
    // (e.g. "type": "module" when enjin runs from its own checkout).
    const scope = join(this.versionsDir, 'package.json');
    if (!existsSync(scope)) writeFileSync(scope, '{ "private": true, "description": "enjin: app versions do not inherit the package scope of the directories above" }\n', { mode: 0o644 });
    await this.versions.secureUnpacked();
    this.checkDisk();
    // Downloads interrupted by a crash are never resumed.
    for (const name of readdirSync(this.versionsDir)) {
      if (name.startsWith('.download-')) rmSync(join(this.versionsDir, name), { force: true });
    }
    await this.versions.reapOrphans();
    this.incarnation = randomUUID();
    this.seq = 0;
    this.publishing = false;
    const supervisor = new Supervisor({
      nodeId: o.nodeId,
      address: this.node.address,
      driver: this.driver,
      ports: new PortAllocator(o.portRange ?? [20000, 29999]),
      versions: this.versions,
      logs: this.logs,
      accounts: this.accounts,
      statePath: join(o.dataDir, 'state.json'),
      baseEnv: this.baseEnv,
      backoff: { initialMs: 1000, maxMs: 60_000, resetAfterMs: 30_000, ...(o.backoff ?? {}) },
      settleMs: o.settleMs ?? 1000,
      probeIntervalMs: o.probeIntervalMs ?? 250,
      onChange: (id) => this.markChanged(id),
      onRemove: (id) => this.markRemoved(id),
      notify: (n) => this.notify(n),
    });
    this.supervisor = supervisor;
    await supervisor.recover();
    this.running = true;
    this.subs.push(o.bus.handle(subjects.agentRpc(o.nodeId), (data) => this.answer(data as AgentRequest)));
    this.subs.push(o.bus.subscribe(subjects.resync(o.nodeId), () => this.publishFull()));
    this.publishFull();
    const heartbeat = setInterval(() => this.heartbeat(), o.heartbeatMs ?? 15_000);
    this.pruneLogs();
    const prune = setInterval(() => this.pruneLogs(), 3600_000);
    this.timers.push(heartbeat, prune);
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.versions.stop();
    await this.supervisor!.shutdown(opts.stopInstances);
    this.logPump.stop();
    this.flush();
    this.publishing = false;
  }

  // ---- requests -------------------------------------------------------------------------------------------------

  private async answer(req: AgentRequest): Promise<AgentReply> {
    const sup = this.supervisor!;
    switch (req?.op) {
      case 'prepare': {
        // A version already here costs no space; a new one is refused while the disk is low.
        const disk = this.checkDisk();
        if (disk?.low && !this.versions.isPrepared(checkId('version', req.version?.versionId))) throw nodeDiskFull(this.node.name, disk.freeBytes, disk.minFreeBytes);
        return { op: 'prepare', ok: true, log: await this.versions.prepare(req.version) };
      }
      case 'start':
        return { op: 'start', ok: true, report: await sup.start(req.instance) };
      case 'stop':
        checkId('instance', req.instanceId);
        await sup.stop(req.instanceId);
        return { op: 'stop', ok: true };
      case 'logs': {
        const path = sup.logPath(req.instanceId);
        if (!sup.has(req.instanceId) && !existsSync(path)) throw notFound(`instance ${req.instanceId} on node ${this.o.nodeId}`);
        if (!Number.isInteger(req.offset) || !Number.isInteger(req.maxBytes) || req.offset < -1 || req.maxBytes < 1) {
          throw invalid('logs needs an integer offset (-1: the end) and a positive maxBytes');
        }
        const chunk = await readLog(path, req.offset, req.maxBytes);
        return { op: 'logs', ok: true, ...chunk };
      }
      case 'prepare-log': {
        checkId('version', req.versionId);
        if (req.offset === undefined) return { op: 'prepare-log', ok: true, log: await this.versions.prepareLog(req.versionId), offset: -1 };
        if (!Number.isInteger(req.offset) || req.offset < 0) throw invalid('prepare-log needs a byte offset of 0 or more');
        const chunk = await this.versions.prepareLogFrom(req.versionId, req.offset);
        return { op: 'prepare-log', ok: true, log: chunk.data, offset: chunk.offset };
      }
      case 'cancel-prepare':
        checkId('version', req.versionId);
        return { op: 'cancel-prepare', ok: true, cancelled: this.versions.cancel(req.versionId) };
      case 'gc': {
        if (!Array.isArray(req.keep)) throw invalid('gc needs `keep`, a list of version ids');
        const removed = await this.versions.gc(req.keep, sup.versionsInUse());
        return { op: 'gc', ok: true, removed };
      }
      default:
        throw invalid(`unknown agent request ${JSON.stringify((req as { op?: unknown })?.op)}`);
    }
  }

  // ---- state exchange ---------------------------------------------------------------------------------------------

  private markChanged(id: string): void {
    this.removed.delete(id);
    this.changed.add(id);
    this.scheduleFlush();
  }

  private markRemoved(id: string): void {
    this.changed.delete(id);
    this.removed.add(id);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.publishing) return;
    this.flushScheduled = true;
    // Changes made in one turn (a stop and its removal, a batch of recoveries) travel as one update.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (!this.publishing || (!this.changed.size && !this.removed.size)) return;
    const instances = [...this.changed].map((id) => this.supervisor!.report(id)).filter((r): r is InstanceReport => r !== null);
    const removed = [...this.removed];
    this.changed.clear();
    this.removed.clear();
    this.publish(instances, removed);
  }

  /** seq 0: everything this node has, replacing what the controller knew. */
  private publishFull(): void {
    if (!this.running) return;
    this.changed.clear();
    this.removed.clear();
    this.publishing = true;
    this.seq = -1;
    this.publish(this.supervisor!.reports(), []);
  }

  /** An empty update, so a silent node is noticed; it takes a seq like any update, so a lost one shows as a gap. */
  private heartbeat(): void {
    this.checkDisk();
    this.flush();
    this.publish([], []);
  }

  private publish(instances: InstanceReport[], removed: string[]): void {
    this.seq++;
    const update: NodeStateUpdate = { node: this.node, incarnation: this.incarnation, seq: this.seq, instances, removed };
    this.o.bus.publish(subjects.nodeState(this.o.nodeId), update);
  }

  private notify(n: Omit<Notification, 'at' | 'nodeId'>): void {
    const full: Notification = { ...n, at: new Date().toISOString(), nodeId: this.o.nodeId };
    this.o.bus.publish(subjects.notifications, full);
  }

  /**
   * Measures the free space of the data directory's disk into the node's info (so every update carries it); warns
   * once when it falls below the threshold and once when it is back. null if it cannot be measured.
   */
  private checkDisk(): NodeDisk | null {
    let disk: NodeDisk;
    try {
      // Logs live in the data directory, versions may live apart (see app-accounts.ts): the fuller disk counts.
      const [s] = [...new Set([this.o.dataDir, this.versionsDir])].map((dir) => statfsSync(dir)).sort((a, b) => a.bavail * a.bsize - b.bavail * b.bsize);
      const minFreeBytes = this.o.minFreeDiskBytes ?? 2 ** 30;
      const freeBytes = s.bavail * s.bsize;
      disk = { freeBytes, totalBytes: s.blocks * s.bsize, minFreeBytes, low: freeBytes < minFreeBytes };
    } catch (err) {
      this.notify({ kind: 'info', message: `the free space of ${this.o.dataDir} cannot be measured: ${(err as Error).message}` });
      return null;
    }
    const was = this.node.disk?.low ?? false;
    this.node.disk = disk;
    if (disk.low !== was) {
      const message = disk.low
        ? nodeDiskFull(this.node.name, disk.freeBytes, disk.minFreeBytes).message
        : `node ${this.node.name} has ${Math.floor(disk.freeBytes / 2 ** 20)} MiB free again: it takes new versions and instances`;
      if (disk.low) log.warn({ freeBytes: disk.freeBytes, minFreeBytes: disk.minFreeBytes }, message);
      else log.info({ freeBytes: disk.freeBytes }, message);
      this.notify({ kind: 'info', message });
    }
    return disk;
  }

  /** Logs of forgotten instances stay readable for a week (a post-mortem needs them), then go. */
  private pruneLogs(): void {
    const cutoff = Date.now() - LOG_RETENTION_MS;
    for (const name of readdirSync(this.logsDir)) {
      const id = name.replace(/\.(log(\.1)?|fifo)$/, '');
      if (this.supervisor?.has(id)) continue;
      const path = join(this.logsDir, name);
      try {
        if (statSync(path).mtimeMs < cutoff) rmSync(path, { force: true });
      } catch {
        // gone meanwhile
      }
    }
  }
}
