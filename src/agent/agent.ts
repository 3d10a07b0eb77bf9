// The agent: one per node; answers the controller's requests on the bus, supervises instances, and reports the node's state.
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { componentLogger } from '../log/logger.ts';
import type { Bus, Subscription } from '../bus/bus.ts';
import { EnjinError, invalid, nodeDiskFull, notFound } from '../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type NodeInfo, type NodeInventory, type Notification, type VersionSpec } from '../core/messages.ts';
import { NodeStateReports } from './state-reports.ts';
import type { NodeCapacity, NodeDisk, NodeRole } from '../core/model.ts';
import { AppAccounts, appsDirFor } from './app-accounts.ts';
import type { Driver } from './drivers/driver.ts';
import { ProcessDriver } from './drivers/process.ts';
import { Supervisor } from './instances.ts';
import type { BackoffPolicy } from './restart-backoff.ts';
import { InstanceLogs } from './instance-logs.ts';
import { LogPump } from './log-pump.ts';
import { readLog } from './logs.ts';
import { PortAllocator } from './ports.ts';
import { checkId, checkVersion, VersionStore } from './versions.ts';
import { measureDisk, pruneOldLogs } from './disk-space.ts';
import { DesiredState } from './desired.ts';
import { DesiredStateReceiver } from '../sync/desired-receiver.ts';
import { BusPackageSource, type PackageFetchOptions } from '../sync/package-fetch.ts';
import { servePackageChunks } from '../sync/package-chunks.ts';
import { CensusResponder } from './census.ts';
import { OneOffRunner } from './one-off.ts';
import { checkVolumes, VolumeStore } from './volumes.ts';

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
  /** what the node offers, reported with its state (cluster nodes) */
  capacity?: NodeCapacity;
  /** overrides every service's restart backoff (tests); absent: each service's `restart.backoff`, reset after 30 s up */
  backoff?: Partial<BackoffPolicy>;
  /** how long an instance that does not listen must stay up to be running, default 1000 */
  settleMs?: number;
  /** pause between readiness probes, default 250 */
  probeIntervalMs?: number;
  driver?: Driver;
  /** how packages are fetched from the controllers (chunk timeouts, requests in flight) */
  packageFetch?: PackageFetchOptions;
  /** how often the sizes of the node's volumes are measured for its reports, ms; default 60000 */
  volumeMeasureMs?: number;
  /** what the node was joined as, told in its inventory; default ['agent'] */
  roles?: NodeRole[];
  /** the compartment the node was joined in, told in its inventory; default null */
  compartment?: string | null;
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
  /** what the controller wants this node to run, kept on disk */
  private desired: DesiredState | null = null;
  private desiredReceiver: DesiredStateReceiver | null = null;
  private subs: Subscription[] = [];
  private timers: NodeJS.Timeout[] = [];
  private running = false;
  /** this node's state as the controller hears it (see state-reports.ts) */
  private readonly reports: NodeStateReports;
  private readonly census: CensusResponder;
  /** one-off processes (`enjin run`) */
  private readonly oneOffRuns: OneOffRunner;
  /** projects' data directories that outlive their versions */
  private readonly volumes: VolumeStore;
  private volumesMeasuredAt = 0;

  constructor(o: AgentOptions) {
    this.o = o;
    // The node id is a token of bus subjects: no dots, no wildcards.
    if (checkId('node', o.nodeId).includes('.')) throw invalid(`node id ${o.nodeId} must not contain '.'`);
    this.node = { nodeId: o.nodeId, name: o.name, address: o.address ?? '127.0.0.1', labels: o.labels ?? {}, ...(o.capacity ? { capacity: o.capacity } : {}) };
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
    this.volumes = new VolumeStore(join(this.appsDir, 'volumes'), this.accounts, () => this.volumesChanged());
    this.reports = new NodeStateReports({ bus: o.bus, nodeId: o.nodeId, node: this.node, reports: () => this.supervisor?.reports() ?? [], report: (id) => this.supervisor?.report(id) ?? null });
    this.census = new CensusResponder(o.bus, o.nodeId, () => this.publishFull());
    this.versions = new VersionStore(this.versionsDir, () => this.baseEnv, { pump: this.logPump, logMaxBytes }, this.driver, new BusPackageSource(o.bus, o.packageFetch), this.accounts);
    this.oneOffRuns = new OneOffRunner({
      nodeId: o.nodeId, bus: o.bus, driver: this.driver, dir: join(o.dataDir, 'runs'),
      preparedDir: (id) => (this.versions.isPrepared(id) ? this.versions.path(id) : null),
      account: (project) => this.accounts.forProject(project),
      baseEnv: () => this.baseEnv,
      volumes: this.volumes,
    });
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
    await this.oneOffRuns.reapOrphans();
    this.node.volumes = this.volumes.list();
    this.reports.begin();
    const supervisor = new Supervisor({
      nodeId: o.nodeId,
      address: this.node.address,
      driver: this.driver,
      ports: new PortAllocator(o.portRange ?? [20000, 29999]),
      versions: this.versions,
      logs: this.logs,
      accounts: this.accounts,
      volumes: this.volumes,
      statePath: join(o.dataDir, 'state.json'),
      baseEnv: this.baseEnv,
      ...(o.backoff ? { backoff: o.backoff } : {}),
      settleMs: o.settleMs ?? 1000,
      probeIntervalMs: o.probeIntervalMs ?? 250,
      onChange: (id) => this.reports.instanceChanged(id),
      onRemove: (id) => this.reports.instanceRemoved(id),
      notify: (n) => this.notify(n),
    });
    this.supervisor = supervisor;
    await supervisor.recover();
    this.running = true;
    const desired = new DesiredState({
      nodeId: o.nodeId,
      path: join(o.dataDir, 'desired.json'),
      has: (id) => supervisor.has(id),
      isPrepared: (versionId) => this.versions.isPrepared(versionId),
      prepare: (version) => this.prepareVersion(version),
      start: (spec) => supervisor.start(spec),
      stop: (id) => supervisor.stop(id),
      reportRemoved: (id) => this.reports.instanceRemoved(id),
      notify: (n) => this.notify(n),
    });
    this.desired = desired;
    // Before any controller answers: what the node was last told keeps running (and starts what had not yet).
    desired.load();
    this.subs.push(o.bus.handle(subjects.agentRpc(o.nodeId), (data) => this.answer(data as AgentRequest)));
    this.subs.push(o.bus.subscribe(subjects.resync(o.nodeId), () => this.publishFull()));
    this.census.start();
    this.subs.push(servePackageChunks(o.bus, this.versions.keptPackages, { subject: subjects.nodePackageChunk(o.nodeId), queue: null, missingHint: 'this node no longer keeps that package' }));
    this.publishFull();
    this.desiredReceiver = new DesiredStateReceiver(o.bus, o.nodeId, { full: (u) => desired.full(u), delta: (u) => desired.delta(u) });
    this.desiredReceiver.start();
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
    this.census.stop();
    this.desiredReceiver?.stop();
    const applied = this.desired?.close();
    await this.versions.stop();
    await this.oneOffRuns.stop();
    await this.supervisor!.shutdown(opts.stopInstances);
    await applied;
    this.logPump.stop();
    this.reports.stop();
  }

  // ---- requests -------------------------------------------------------------------------------------------------

  private async answer(req: AgentRequest): Promise<AgentReply> {
    const sup = this.supervisor!;
    switch (req?.op) {
      case 'prepare':
        return { op: 'prepare', ok: true, log: await this.prepareVersion(req.version) };
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
      case 'release': {
        const version = checkVersion(req.version);
        if (typeof req.command !== 'string' || !req.command.trim()) throw invalid('release needs a command');
        if (req.env !== undefined && (!req.env || typeof req.env !== 'object' || Object.values(req.env).some((v) => typeof v !== 'string'))) throw invalid('release env must map names to strings');
        // A release command (a migration) sees the project's volumes like its instances do.
        const volumes = req.volumes === undefined ? {} : this.volumes.ensure(req.workspace ?? 'default', version.project, checkVolumes(req.volumes));
        return { op: 'release', ok: true, log: await this.versions.runRelease(version, req.command, { ...req.env, ...volumes }) };
      }
      case 'cancel-prepare':
        checkId('version', req.versionId);
        return { op: 'cancel-prepare', ok: true, cancelled: this.versions.cancel(req.versionId) };
      case 'gc': {
        if (!Array.isArray(req.keep)) throw invalid('gc needs `keep`, a list of version ids');
        const removed = await this.versions.gc(req.keep, sup.versionsInUse());
        return { op: 'gc', ok: true, removed };
      }
      case 'volumes':
        return { op: 'volumes', ok: true, volumes: await this.measureVolumes() };
      case 'drop-volumes': {
        const running = sup.reports().filter((r) => r.project === req.project);
        if (running.length) {
          throw new EnjinError('volumes_in_use', `${running.length} instance(s) of ${req.project} still run on node ${this.node.name} (${running.map((r) => r.instanceId).join(', ')}); stop them before removing its volumes`, { status: 409 });
        }
        const removed = this.volumes.drop(req.workspace, req.project, req.names);
        for (const v of removed) log.info({ project: v.project, volume: v.name, dir: v.dir }, 'removed a volume as asked');
        this.volumesChanged();
        return { op: 'drop-volumes', ok: true, removed };
      }
      case 'inventory':
        return { op: 'inventory', ok: true, inventory: await this.inventory() };
      case 'version-manifest':
        return { op: 'version-manifest', ok: true, ...(await this.versions.manifest(checkId('version', req.versionId))) };
      case 'run':
        return { op: 'run', ok: true, pid: await this.oneOffRuns.start(req.run) };
      default:
        throw invalid(`unknown agent request ${JSON.stringify((req as { op?: unknown })?.op)}`);
    }
  }

  /** What this node holds, for a controller rebuilding its store from the nodes. */
  private async inventory(): Promise<NodeInventory> {
    return {
      node: { ...this.node, roles: this.o.roles ?? ['agent'], compartment: this.o.compartment ?? null },
      desired: this.desired!.instances,
      versions: await this.versions.kept(),
    };
  }

  /** A version already here costs no space; a new one is refused while the disk is low. */
  private prepareVersion(version: VersionSpec): Promise<string> {
    const disk = this.checkDisk();
    if (disk?.low && !this.versions.isPrepared(checkId('version', version?.versionId))) throw nodeDiskFull(this.node.name, disk.freeBytes, disk.minFreeBytes);
    return this.versions.prepare(version);
  }

  /** seq 0, once running: everything this node has (at start, and when the controller or a census asks). */
  private publishFull(): void {
    if (this.running) this.reports.full();
  }

  /** The heartbeat: free space now, volume sizes now and then, then an (empty) update. */
  private heartbeat(): void {
    this.checkDisk();
    // Walking a volume's files can be long: its size is measured now and then, not for every report.
    if (Date.now() - this.volumesMeasuredAt >= (this.o.volumeMeasureMs ?? 60_000)) {
      void this.measureVolumes().catch((err: unknown) => log.warn({ err }, 'measuring the sizes of the volumes failed; the next heartbeat tries again'));
    }
    this.reports.beat();
  }

  /** Measures the volumes' sizes now; the next report carries them. */
  private async measureVolumes() {
    this.volumesMeasuredAt = Date.now();
    const volumes = await this.volumes.measure();
    this.node.volumes = volumes;
    return volumes;
  }

  /** A volume was made or removed: the controller hears it at once (it places the project's instances by it). */
  private volumesChanged(): void {
    this.node.volumes = this.volumes.list();
    if (this.running) this.reports.infoChanged();
  }

  private notify(n: Omit<Notification, 'at' | 'nodeId'>): void {
    const full: Notification = { ...n, at: new Date().toISOString(), nodeId: this.o.nodeId };
    this.o.bus.publish(subjects.notifications, full);
  }

  /** The node's free space, into its info (every update carries it); a crossing of the threshold is said once. */
  private checkDisk(): NodeDisk | null {
    const disk = measureDisk([this.o.dataDir, this.versionsDir], this.o.minFreeDiskBytes ?? 2 ** 30, (message) => this.notify({ kind: 'info', message }));
    if (!disk) return null;
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

  private pruneLogs(): void {
    pruneOldLogs(this.logsDir, (id) => this.supervisor?.has(id) ?? false);
  }
}
