// The agent: one per node; answers the controller's requests on the bus, supervises instances, and reports the node's state.
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Bus, Subscription } from '../bus/bus.ts';
import { invalid, notFound } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceReport, type NodeInfo, type NodeStateUpdate, type Notification } from '../core/messages.ts';
import { AppAccounts, appsDirFor } from './app-accounts.ts';
import type { Driver } from './drivers/driver.ts';
import { ProcessDriver } from './drivers/process.ts';
import { Supervisor, type BackoffPolicy } from './instances.ts';
import { readLog, rotateIfLarger } from './logs.ts';
import { PortAllocator } from './ports.ts';
import { checkId, VersionStore } from './versions.ts';

const LOG_RETENTION_MS = 7 * 24 * 3600_000;

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
  /** per-instance log cap before rotation (one rotated file is kept), default 5 MiB */
  logMaxBytes?: number;
  /** default 15000 */
  heartbeatMs?: number;
  /** env given to every instance and prepare command on top of PATH, HOME and LANG (which come from the agent) */
  baseEnv?: Record<string, string>;
  labels?: Record<string, string>;
  /** restart delays, default 1 s doubling to 60 s, reset after 30 s up */
  backoff?: Partial<BackoffPolicy>;
  /** how often log sizes are checked, default 5000 */
  logCheckMs?: number;
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
    this.appsDir = appsDirFor(o.dataDir);
    if (this.appsDir !== o.dataDir) this.notices.push(`apps cannot pass through a directory above ${o.dataDir}: their versions and HOMEs are kept in ${this.appsDir}`);
    this.versionsDir = join(this.appsDir, 'versions');
    this.accounts = new AppAccounts(join(this.appsDir, 'homes'), this.baseEnv.HOME);
    this.versions = new VersionStore(this.versionsDir, () => this.baseEnv, this.accounts);
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
    await this.versions.secureUnpacked();
    // Downloads interrupted by a crash are never resumed.
    for (const name of readdirSync(this.versionsDir)) {
      if (name.startsWith('.download-')) rmSync(join(this.versionsDir, name), { force: true });
    }
    this.versions.reapOrphans();
    this.incarnation = randomUUID();
    this.seq = 0;
    this.publishing = false;
    const supervisor = new Supervisor({
      nodeId: o.nodeId,
      address: this.node.address,
      driver: this.driver,
      ports: new PortAllocator(o.portRange ?? [20000, 29999]),
      versions: this.versions,
      accounts: this.accounts,
      logsDir: this.logsDir,
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
    const logCheck = setInterval(() => void this.rotateLogs(), o.logCheckMs ?? 5000);
    this.pruneLogs();
    const prune = setInterval(() => this.pruneLogs(), 3600_000);
    this.timers.push(heartbeat, logCheck, prune);
  }

  async stop(opts: { stopInstances: boolean }): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.versions.stop();
    await this.supervisor!.shutdown(opts.stopInstances);
    this.flush();
    this.publishing = false;
  }

  // ---- requests -------------------------------------------------------------------------------------------------

  private async answer(req: AgentRequest): Promise<AgentReply> {
    const sup = this.supervisor!;
    switch (req?.op) {
      case 'prepare':
        return { op: 'prepare', ok: true, log: await this.versions.prepare(req.version) };
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

  /** Logs of forgotten instances stay readable for a week (a post-mortem needs them), then go. */
  private pruneLogs(): void {
    const cutoff = Date.now() - LOG_RETENTION_MS;
    for (const name of readdirSync(this.logsDir)) {
      const id = name.replace(/\.log(\.1)?$/, '');
      if (this.supervisor?.has(id)) continue;
      const path = join(this.logsDir, name);
      try {
        if (statSync(path).mtimeMs < cutoff) rmSync(path, { force: true });
      } catch {
        // gone meanwhile
      }
    }
  }

  private async rotateLogs(): Promise<void> {
    const max = this.o.logMaxBytes ?? 5 * 1024 * 1024;
    for (const id of this.supervisor?.ids() ?? []) {
      try {
        await rotateIfLarger(this.supervisor!.logPath(id), max);
      } catch {
        // a log that cannot be rotated now is tried again next round
      }
    }
  }
}
