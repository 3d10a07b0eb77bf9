// The controller: the only writer of desired state. Holds the working set in memory, hands desired-state changes to the
// one serialized applier (project-changes.ts), folds node reports into current state, and publishes routes.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus, Subscription } from '../bus/bus.ts';
import { EnjinError, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Instance, Job, Project, Version } from '../core/model.ts';
import { subjects, type Notification } from '../core/messages.ts';
import type { Store } from '../store/store.ts';
import { NodeStateReceiver } from '../sync/node-state.ts';
import { DesiredStatePublisher } from '../sync/desired-publisher.ts';
import { desiredInstancesFor } from './jobs/specs.ts';
import { JobEngine } from './jobs/engine.ts';
import { JobIndex } from './jobs/job-index.ts';
import { jobActions, type ActionHost } from './jobs/actions.ts';
import { rolloutActions } from './rollout/rollout-job.ts';
import { RolloutRegistry } from './rollout/registry.ts';
import { buildRouteTable } from './routes/build.ts';
import { RoutePublisher } from './routes/publisher.ts';
import { NodeReportIntake } from './node-reports.ts';
import { ControllerState } from './state.ts';
import { DiskPackageStore, type PackageStore } from './packages.ts';
import { DatabasePackageStore, importDiskPackages } from './database-packages.ts';
import { servePackageChunks } from '../sync/package-chunks.ts';
import { TokenAuth } from './auth/tokens.ts';
import { Admission, type NatsForNodes } from './admission.ts';
import { DEFAULT_NODE_DOWN_AFTER_MS, NodeLifecycle, type NodeChange } from './nodes.ts';
import { componentLogger } from '../log/logger.ts';
import { Leadership } from './leadership.ts';
import { WriteBehindStore } from '../store/write-behind.ts';
import { DESIRED_CHANGED_SUBJECT, FollowerSync } from './follower-sync.ts';
import { ProjectChanges, type TreeKind } from './project-changes.ts';
import { configRelease, rollbackRelease, type ConfigChange, type ReleaseMeta } from './releases.ts';
import { LeaderTurns, type LeaderDuty } from './leader-turns.ts';
import { EventLog } from './events.ts';
import { OneOffRuns } from './one-off-runs.ts';

export type { LeaderDuty, TreeKind };

const log = componentLogger('controller');

export interface ControllerOptions {
  store: Store;
  bus: Bus;
  dataDir: string;
  /** DOMAIN of generated hostnames SERVICE.PROJECT.DOMAIN */
  domain: string;
  /** how often the reconcile loop looks at every project, ms */
  reconcileIntervalMs?: number;
  /** caps each service's `drain` (how long a stop waits for routers to drain requests to an instance), ms; default no cap */
  drainTimeoutMs?: number;
  /** what joining nodes are told about the bus; absent: nodes cannot join (`enjin up`) */
  natsForNodes?: NatsForNodes;
  /** how often nodes hear from the desired-state publisher when nothing changes, ms (default 15000) */
  desiredKeepaliveMs?: number;
  /** a node whose state exchange is silent this long is down and its instances are replaced (default 30 s) */
  nodeDownAfterMs?: number;
  /** events older than this are forgotten (default 7 days) */
  eventRetentionMs?: number;
  /** the clock node-down timing and failure backoff read, ms; tests move it (default Date.now) */
  now?: () => number;
  /** this controller's id in the `controllers` table (several controllers share one PostgreSQL); default: a new one */
  controllerId?: string;
  /** how often a follower reloads desired state from the store, ms */
  followerReloadMs?: number;
  /** nothing is sent to a node about what to run while this says so, from the very start (a recovery sets it) */
  holdDesired?: (nodeId: string) => boolean;
}

export class Controller implements ActionHost {
  readonly state: ControllerState;
  /** the store as the controller writes it: supervision rows behind (queued through an outage), desired state now */
  readonly store: WriteBehindStore;
  /** who leads among the controllers on this store (the embedded store: always this one) */
  readonly leadership: Leadership;
  readonly bus: Bus;
  readonly jobs: JobEngine;
  /** health-gated rollouts under way: what `deploy --promote` and `--abort` reach */
  readonly rollouts = new RolloutRegistry();
  /** one-off processes (`enjin run`), each a job tree joined to its client's connection */
  readonly runs: OneOffRuns;
  /** what `GET /v1/jobs` pages through: the newest jobs in memory */
  readonly jobIndex: JobIndex;
  readonly routes: RoutePublisher;
  readonly packages: PackageStore;
  readonly domain: string;
  readonly drainTimeoutMs: number;
  readonly auth: TokenAuth;
  /** join tokens and joins: how nodes and their keys are admitted */
  readonly admission: Admission;
  /** the API's base URL (for the credentials file); set once the API listens */
  apiUrl = '';
  /**
   * The port clients reach the routers on, for the URLs shown to users: `enjin up` sets its router's. null in a
   * cluster, where routers sit behind whatever the operator puts in front of them (DNS, a load balancer on 80/443).
   */
  routerPort: number | null = null;
  /** set by whoever composes the process once every local component is up (GET /healthz) */
  ready = false;
  /** while it says so, nothing is sent to the node about what to run (a recovery reads what the node keeps first) */
  holdDesired: ((nodeId: string) => boolean) | null = null;
  /** a rebuild of the store from the nodes (`--recover-from-nodes`), while one runs; writes wait for its first pass */
  recovery: { blocksWrites(): boolean; status(): unknown } | null = null;
  private readonly receiver: NodeStateReceiver;
  /** tells each node what to run; started and stopped with leadership */
  readonly desired: DesiredStatePublisher;
  /** the one serialized applier: desired-state changes become job trees there, one at a time */
  readonly changes: ProjectChanges;
  private packageChunks: Subscription | null = null;
  private readonly reconcileIntervalMs: number;
  readonly notifications: Notification[] = [];
  readonly events: EventLog;
  /** the controller's clock, ms */
  readonly now: () => number;
  /** nodes going down, drained, activated and removed */
  readonly nodeLifecycle: NodeLifecycle;
  private readonly followerSync: FollowerSync;
  /** taking over and stepping down, one at a time */
  private readonly turns: LeaderTurns;

  private constructor(opts: ControllerOptions, state: ControllerState) {
    this.store = opts.store instanceof WriteBehindStore ? opts.store : new WriteBehindStore(opts.store);
    // Followers reload at once when the leader says desired state changed, rather than at their next poll.
    this.store.onDesiredWrite = () => { if (this.leadership.leading) this.bus.publish(DESIRED_CHANGED_SUBJECT, { from: this.leadership.id }); };
    this.bus = opts.bus;
    this.holdDesired = opts.holdDesired ?? null;
    this.auth = new TokenAuth(this.store);
    this.admission = new Admission({
      store: this.store, state, nats: opts.natsForNodes ?? null,
      leadership: () => ({ leading: this.leadership.leading, leader: this.leadership.leader() }),
    });
    this.state = state;
    this.domain = opts.domain;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? Infinity;
    this.reconcileIntervalMs = opts.reconcileIntervalMs ?? 5_000;
    this.now = opts.now ?? Date.now;
    this.packages = packageStoreFor(opts.store, opts.dataDir);
    // A one-off run changes no desired state: how it ends is no failure of the project's (no backoff, no revert).
    this.runs = new OneOffRuns(this);
    this.jobs = new JobEngine({ store: this.store, actions: { ...jobActions(this), ...rolloutActions(this, jobActions(this), this.rollouts), ...this.runs.actions }, onTreeFinished: (root, jobs) => (root.kind === 'run' ? undefined : this.changes.treeFinished(root, jobs)) });
    this.changes = new ProjectChanges({
      state, store: this.store, bus: this.bus, jobs: this.jobs, packages: this.packages, domain: this.domain, actions: this,
      now: () => this.now(), saveProject: (p) => this.saveProject(p), defaultWorkspace: () => this.defaultWorkspace(),
      leaderDutiesRunning: () => this.turns.dutiesRunning, notify: (n) => this.notify(n),
    });
    this.jobIndex = new JobIndex(this.store, this.jobs.events);
    this.events = new EventLog({ store: this.store, leading: () => this.leadership.leading, retentionMs: opts.eventRetentionMs, now: () => this.now() });
    this.routes = new RoutePublisher(this.bus, () =>
      buildRouteTable({
        workspaces: this.state.workspaces,
        projects: this.state.projects.values(),
        versions: this.state.versions,
        instancesOf: (id) => this.state.instancesOf(id),
        nodes: this.state.nodes,
        domain: this.domain,
      }),
    );
    const intake = new NodeReportIntake({ state: this.state, store: this.store, bus: this.bus, notify: (n) => this.notify(n), persistInstance: (i) => this.persistInstance(i), routesChanged: () => this.routes.refresh(), now: this.now, decidesUnknown: () => this.leadership.leading });
    this.nodeLifecycle = new NodeLifecycle({
      state: this.state, store: this.store, notify: (n) => this.notify(n), refreshRoutes: () => this.routes.refresh(),
      converge: (p, kind, title) => this.converge(p, kind, title), now: this.now, nodeDownAfterMs: opts.nodeDownAfterMs ?? DEFAULT_NODE_DOWN_AFTER_MS,
    });
    this.receiver = new NodeStateReceiver(this.bus, {
      full: (u) => { intake.apply(u, true); this.changes.leftovers.nodeReported(u.node.nodeId, new Set(u.instances.map((i) => i.instanceId))); },
      delta: (u) => { intake.apply(u, false); this.changes.leftovers.nodeRemoved(u.node.nodeId, u.removed); },
    });
    this.desired = new DesiredStatePublisher(this.bus, {
      desiredFor: (nodeId) => {
        // Beside its rows: what a forced stop or destroy left on the node, until it reports them gone.
        const rows = desiredInstancesFor(this, nodeId);
        return [...rows, ...this.changes.leftovers.for(nodeId, new Set(rows.map((d) => d.spec.instanceId)))];
      },
      nodeIds: () => this.state.nodes.keys(),
      keepaliveMs: opts.desiredKeepaliveMs,
      // signed buses name the verified sender: a node asks for its own desired state only
      checkSender: (nodeId, sender) => sender === null || sender === nodeId,
      hold: (nodeId) => this.holdDesired?.(nodeId) ?? false,
    });
    this.state.onInstanceChange((_id, now, before) => {
      for (const nodeId of new Set([now?.nodeId, before?.nodeId])) if (nodeId) this.desired.changed(nodeId);
    });
    this.followerSync = new FollowerSync(this.store, this.bus, this.state, opts.followerReloadMs, this.jobs.events);
    this.turns = new LeaderTurns({
      state, store: this.store, jobs: this.jobs, routes: this.routes, nodeLifecycle: this.nodeLifecycle, followerSync: this.followerSync,
      reconcileIntervalMs: this.reconcileIntervalMs, id: () => this.leadership.id, requestResync: (id) => this.receiver.requestResync(id),
      tick: () => this.tick(), forgetTrees: () => this.changes.forgetTrees(),
    });
    this.leadership = new Leadership({
      id: opts.controllerId ?? newId('ctl'),
      apiUrl: () => this.apiUrl,
      store: this.store,
      lock: this.store.openLeaderLock?.() ?? null,
      onBecomeLeader: (previous) => this.turns.inTurn(() => this.turns.lead(previous)),
      onStepDown: (reason) => this.turns.inTurn(() => this.turns.follow(reason)),
    });
    // With other controllers possible, this one writes nothing until it holds the lock.
    if (this.store.openLeaderLock) this.store.setFollower(true);
  }

  static async start(opts: ControllerOptions): Promise<Controller> {
    // package blobs: enjin's alone
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(opts.dataDir, 0o700);
    const snapshot = await opts.store.load();
    const c = new Controller(opts, new ControllerState(snapshot));
    await c.auth.start();
    c.receiver.start();
    c.bus.subscribe(subjects.notifications, (m) => c.notify(m.data as Notification));
    // A bus outage silences every node at once: that is no reason to call them down. When it is back, each node is
    // asked for its full state (agents also resync on their own reconnect).
    c.bus.onStatus((status) => {
      if (status === 'disconnected') {
        log.warn('lost the bus: nodes are not judged by their silence until it is back');
        c.nodeLifecycle.busLost();
        return;
      }
      log.info('the bus is back: asking every node for its full state');
      c.nodeLifecycle.busBack();
      if (c.leadership.leading) for (const n of c.state.nodes.values()) c.receiver.requestResync(n.id);
    });
    // Packages an earlier controller kept on its disk move into PostgreSQL before any agent asks for them.
    if (c.packages instanceof DatabasePackageStore) await importDiskPackages(join(opts.dataDir, 'packages'), c.packages);
    // Serving packages is a read: followers answer too.
    c.packageChunks = servePackageChunks(c.bus, c.packages);
    // The desired-state publisher runs only while leading, with a new incarnation each time.
    await c.whileLeading({ start: () => c.desired.start(), stop: () => c.desired.stop() });
    await c.whileLeading({ start: () => c.events.startPruning(), stop: () => c.events.stopPruning() });
    await c.jobIndex.load();
    // Leads at once if the lock is free (always, on the embedded store); otherwise follows and keeps trying.
    await c.leadership.start();
    if (!c.leadership.leading) await c.turns.inTurn(() => c.turns.follow('another controller leads'));
    return c;
  }

  async stop(): Promise<void> {
    this.followerSync.stop();
    await this.turns.stopDuties();
    await this.leadership.stop();
    this.auth.stop();
    this.packageChunks?.unsubscribe();
    this.receiver.stop();
    await this.jobs.stop();
    await this.store.stop();
  }

  /** Registers something only the leader runs: started now if this controller leads, and on every takeover. */
  whileLeading(duty: LeaderDuty): Promise<void> {
    return this.turns.whileLeading(duty);
  }

  // --- lookups ---

  defaultWorkspace() {
    return this.state.workspaceByName('default')!;
  }

  project(name: string): Project {
    const p = this.state.projectByName(this.defaultWorkspace().id, name);
    if (!p || this.changes.isDestroying(p.id)) throw notFound(`project ${name}`, 'list projects with `enjin projects`');
    return p;
  }

  versionOf(project: Project, ref?: string | number): Version {
    const versions = this.state.versionsOf(project.id);
    const s = ref === undefined ? undefined : String(ref).replace(/^v/, '');
    const v = versions.find((x) => String(x.number) === s || x.id === ref);
    if (!v) throw notFound(`version ${ref} of ${project.name}`, 'list versions with `enjin versions`');
    return v;
  }

  // --- desired state changes: each one ends in a job tree (or nothing to do); see project-changes.ts ---

  /**
   * `enjin config set/unset`: a new release of the current build with the changed config, rolled out like a deploy
   * but with nothing built; before the first release, the config is kept for it.
   */
  changeConfig(project: Project, change: ConfigChange, meta: ReleaseMeta): Promise<{ version: Version | null; job: Job | null }> {
    return this.changes.releaseBuild(project, 'config', configRelease(this.state, change, meta));
  }
  /**
   * `enjin rollback [vN]`: a new release with vN's build and config (default: the release before the current one).
   * Nothing is built; nodes that kept vN's build start at once.
   */
  rollback(project: Project, ref: string | number | undefined, meta: ReleaseMeta): Promise<{ version: Version | null; job: Job | null }> {
    return this.changes.releaseBuild(project, 'rollback', rollbackRelease(this.state, (p) => this.versionOf(p, ref), ref === undefined, meta));
  }

  /** `by`: the token's name, kept in the tree's params for `enjin releases` */
  scale(project: Project, changes: Record<string, number>, by: string): Promise<Job | null> {
    return this.changes.scale(project, changes, by);
  }

  /**
   * Destroys the project; one-off runs still going in it are aborted (their processes killed on their nodes).
   * `volumes`: its volumes are removed on the nodes too (otherwise they are kept).
   */
  async destroy(project: Project, opts: { volumes?: boolean; force?: boolean } = {}): Promise<Job> {
    const tree = await this.changes.destroy(project, opts);
    const { jobs } = await this.jobIndex.list({ rootsOnly: true, states: ['waiting', 'running'], limit: 500, tags: { project: project.name } });
    for (const run of jobs.filter((j) => j.kind === 'run' && j.params.projectId === project.id)) {
      await this.jobs.abort(run.id, `${project.name} is being destroyed`).catch((err: unknown) => log.warn({ err, jobId: run.id }, 'aborting a one-off run of a destroyed project failed; it ends when its process does'));
    }
    return tree;
  }

  /** A rolling restart (see ProjectChanges.restart). */
  restart(project: Project, services: string[]): Promise<Job | null> {
    return this.changes.restart(project, services);
  }

  converge(project: Project, kind: TreeKind, title: string): Promise<Job | null> {
    return this.changes.converge(project, kind, title);
  }

  /** Takes an uploaded package as one decision (see ProjectChanges.deploy). */
  deploy(projectName: string, upload: { sha256: string; size: number; path: string }, manifest: Version['manifest'], release: boolean, meta: ReleaseMeta): Promise<{ project: Project; version: Version; created: boolean; job: Job | null }> {
    return this.changes.deploy(projectName, upload, manifest, release, meta);
  }

  /** The leader's loop (public so tests drive it with their clock): nodes gone silent go down, every project converges. */
  async tick(): Promise<void> {
    const now = this.now();
    this.nodeLifecycle.markSilentNodesDown();
    await this.changes.convergeAll(now);
  }

  private persistInstance(i: Instance): void {
    void this.store.saveInstance(i).catch((err: unknown) => log.warn({ err, instanceId: i.id }, 'could not save the instance; memory keeps it and its next change saves it again'));
  }

  notify(n: Notification): void {
    this.notifications.push(n);
    if (this.notifications.length > 500) this.notifications.splice(0, this.notifications.length - 500);
    this.events.record(n);
  }

  // --- nodes (see nodes.ts) ---

  /** Asks a node for its full state now (seq 0), rather than waiting for its next change. */
  requestNodeState(nodeId: string): void {
    this.receiver.requestResync(nodeId);
  }

  drainNode(ref: string): Promise<NodeChange> {
    return this.nodeLifecycle.drain(ref);
  }

  activateNode(ref: string): Promise<NodeChange> {
    return this.nodeLifecycle.activate(ref);
  }

  removeNode(ref: string, force: boolean): Promise<NodeChange> {
    return this.nodeLifecycle.remove(ref, force);
  }

  // --- writes used by job actions ---

  async saveProject(p: Project): Promise<void> {
    const next = { ...p, updatedAt: new Date().toISOString() };
    await this.store.saveProject(next);
    this.state.projects.set(next.id, next);
    this.routes.refresh();
  }

  async saveInstance(i: Instance): Promise<void> {
    await this.store.saveInstance(i);
    this.state.putInstance(i);
    this.routes.refresh();
  }

  async forgetInstance(id: string): Promise<void> {
    await this.store.deleteInstance(id);
    this.state.removeInstance(id);
    this.routes.refresh();
  }

  async forgetProject(project: Project): Promise<void> {
    const versions = this.state.versionsOf(project.id);
    await this.store.deleteProject(project.id);
    this.state.removeProject(project.id);
    this.changes.forget(project.id);
    for (const v of versions) {
      const stillUsed = [...this.state.versions.values()].some((o) => o.sha256 === v.sha256);
      if (!stillUsed) await this.packages.remove(v.sha256).catch((err: unknown) => log.error({ err, sha256: v.sha256 }, 'removing the package of a destroyed project failed; its bytes stay stored'));
    }
    this.routes.refresh();
  }
}

/**
 * Packages go where every controller can read them: in PostgreSQL when the store is a server, on this controller's
 * disk beside the embedded store (one controller only; PGlite's WebAssembly heap is no place for blobs).
 */
function packageStoreFor(store: Store, dataDir: string): PackageStore {
  if (store.backend === 'pglite') return new DiskPackageStore(join(dataDir, 'packages'));
  if (!store.packageBlobs) throw new EnjinError('invalid_config', 'the PostgreSQL store offers no package blobs; this build of enjin is inconsistent', { status: 500 });
  return new DatabasePackageStore(store.packageBlobs, join(dataDir, 'uploads'));
}
