// The controller: the only writer of desired state. Holds the working set in memory, turns reconciler plans into job
// trees through one serialized applier, folds node reports into current state, and publishes routes.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bus } from '../bus/bus.ts';
import { conflict, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Instance, Job, Project, Version } from '../core/model.ts';
import { subjects, type Notification } from '../core/messages.ts';
import type { Store } from '../store/store.ts';
import { NodeStateReceiver } from '../sync/node-state.ts';
import { JobEngine } from './jobs/engine.ts';
import { JobIndex } from './jobs/job-index.ts';
import { buildTree, jobActions, type ActionHost } from './jobs/actions.ts';
import { isEmptyPlan, reconcile, type Plan } from './reconcile/reconcile.ts';
import { buildRouteTable } from './routes/build.ts';
import { hostnameClashes } from './hostnames.ts';
import { RoutePublisher } from './routes/publisher.ts';
import { NodeReportIntake } from './node-reports.ts';
import { ControllerState } from './state.ts';
import { PackageStore } from './packages.ts';
import { TokenAuth } from './auth/tokens.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('controller');

export interface ControllerOptions {
  store: Store;
  bus: Bus;
  dataDir: string;
  /** DOMAIN of generated hostnames SERVICE.PROJECT.DOMAIN */
  domain: string;
  /** how often the reconcile loop looks at every project, ms */
  reconcileIntervalMs?: number;
  /** how long a stop waits for routers to drain requests to an instance, ms */
  drainTimeoutMs?: number;
}

export type TreeKind = 'deploy' | 'rollback' | 'scale' | 'reconcile' | 'revert' | 'destroy';

const NODE_DOWN_AFTER_MS = 45_000;
/** unpacked versions each node keeps per project beyond the ones in use */
const KEEP_PREPARED_VERSIONS = 3;
const FAILURE_BACKOFF_MS = [15_000, 30_000, 60_000, 120_000, 300_000, 600_000];

export class Controller implements ActionHost {
  readonly state: ControllerState;
  readonly store: Store;
  readonly bus: Bus;
  readonly jobs: JobEngine;
  /** what `GET /v1/jobs` pages through: the newest jobs in memory */
  readonly jobIndex: JobIndex;
  readonly routes: RoutePublisher;
  readonly packages: PackageStore;
  readonly domain: string;
  readonly drainTimeoutMs: number;
  readonly auth: TokenAuth;
  /** base URL agents fetch packages from; set once the API listens */
  apiUrl = '';
  /** set by whoever composes the process once every local component is up (GET /healthz) */
  ready = false;
  private readonly receiver: NodeStateReceiver;
  private applying: Promise<unknown> = Promise.resolve();
  /** project id → root job id of the tree working on it: one tree per project at a time */
  private readonly busy = new Map<string, string>();
  private readonly backoff = new Map<string, { until: number; failures: number }>();
  private readonly destroying = new Set<string>();
  private loop: NodeJS.Timeout | null = null;
  private readonly reconcileIntervalMs: number;
  readonly notifications: Notification[] = [];

  private constructor(opts: ControllerOptions, state: ControllerState) {
    this.store = opts.store;
    this.bus = opts.bus;
    this.auth = new TokenAuth(opts.store);
    this.state = state;
    this.domain = opts.domain;
    this.drainTimeoutMs = opts.drainTimeoutMs ?? 10_000;
    this.reconcileIntervalMs = opts.reconcileIntervalMs ?? 5_000;
    this.packages = new PackageStore(join(opts.dataDir, 'packages'));
    this.jobs = new JobEngine({ store: this.store, actions: jobActions(this), onTreeFinished: (root, jobs) => this.treeFinished(root, jobs) });
    this.jobIndex = new JobIndex(this.store, this.jobs.events);
    this.routes = new RoutePublisher(this.bus, () =>
      buildRouteTable({
        workspaces: this.state.workspaces,
        projects: this.state.projects.values(),
        versions: this.state.versions,
        instancesOf: (id) => this.state.instancesOf(id),
        domain: this.domain,
      }),
    );
    const intake = new NodeReportIntake({ state: this.state, store: this.store, bus: this.bus, notify: (n) => this.notify(n), persistInstance: (i) => this.persistInstance(i), routesChanged: () => this.routes.refresh() });
    this.receiver = new NodeStateReceiver(this.bus, { full: (u) => intake.apply(u, true), delta: (u) => intake.apply(u, false) });
  }

  static async start(opts: ControllerOptions): Promise<Controller> {
    // package blobs: enjin's alone
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(opts.dataDir, 0o700);
    const snapshot = await opts.store.load();
    const c = new Controller(opts, new ControllerState(snapshot));
    if (!c.state.workspaceByName('default')) {
      const ws = { id: newId('ws'), name: 'default', createdAt: new Date().toISOString() };
      await c.store.insertWorkspace(ws);
      c.state.workspaces.set(ws.id, ws);
    }
    // Nodes are 'down' until they speak again; their reports will bring them back.
    for (const n of c.state.nodes.values()) n.status = 'down';
    c.receiver.start();
    c.routes.start();
    c.bus.subscribe(subjects.notifications, (m) => c.notify(m.data as Notification));
    await c.jobs.recover(snapshot.unfinishedJobs);
    await c.jobIndex.load();
    c.loop = setInterval(() => void c.tick(), c.reconcileIntervalMs);
    c.loop.unref();
    return c;
  }

  async stop(): Promise<void> {
    if (this.loop) clearInterval(this.loop);
    this.receiver.stop();
    this.routes.stop();
    await this.jobs.stop();
  }

  /** the token agents present to download packages (see TokenAuth) */
  get nodeToken(): string {
    return this.auth.nodeToken;
  }

  // --- lookups ---

  defaultWorkspace() {
    return this.state.workspaceByName('default')!;
  }

  project(name: string): Project {
    const p = this.state.projectByName(this.defaultWorkspace().id, name);
    if (!p || this.destroying.has(p.id)) throw notFound(`project ${name}`, 'list projects with `enjin projects`');
    return p;
  }

  versionOf(project: Project, ref?: string | number): Version {
    const versions = this.state.versionsOf(project.id);
    const s = ref === undefined ? undefined : String(ref).replace(/^v/, '');
    const v = versions.find((x) => String(x.number) === s || x.id === ref);
    if (!v) throw notFound(`version ${ref} of ${project.name}`, 'list versions with `enjin versions`');
    return v;
  }

  // --- desired state changes: each one ends in a job tree (or nothing to do) ---

  /**
   * Makes `version` the project's desired version and starts the tree that rolls it out. Throws before changing
   * anything if the project already has a tree running.
   */
  async release(project: Project, version: Version, kind: 'deploy' | 'rollback'): Promise<Job | null> {
    return this.serialized(async () => {
      this.assertIdle(project);
      const previous = project.currentVersionId;
      const next = { ...project, currentVersionId: version.id };
      // Plan before saving: if no plan can be made (no ready node), the request fails and nothing has changed.
      const plan = this.plan(next);
      if (previous === version.id && isEmptyPlan(plan)) return null;
      await this.saveProject(next);
      this.backoff.delete(project.id);
      const title = `${kind} ${project.name} v${version.number}`;
      return this.startPlan(this.state.projects.get(project.id)!, plan, kind, title, { previousVersionId: previous, targetVersionId: version.id });
    });
  }

  async scale(project: Project, changes: Record<string, number>): Promise<Job | null> {
    return this.serialized(async () => {
      this.assertIdle(project);
      const next = { ...project, scale: { ...project.scale, ...changes } };
      const plan = this.plan(next);
      await this.saveProject(next);
      this.backoff.delete(project.id);
      const summary = Object.entries(changes).map(([s, n]) => `${s}=${n}`).join(' ');
      return this.startPlan(this.state.projects.get(project.id)!, plan, 'scale', `scale ${project.name} ${summary}`, {});
    });
  }

  async destroy(project: Project): Promise<Job> {
    return this.serialized(async () => {
      this.assertIdle(project);
      this.destroying.add(project.id);
      const plan = reconcile({ ...this.reconcileInput(project), project: null });
      const tree = buildTree(this, project, plan, 'destroy', `destroy ${project.name}`, {});
      return this.startTree(project, tree);
    });
  }

  /** Called by the reconcile loop and after trees end: closes any gap between desired and current. */
  async converge(project: Project, kind: TreeKind, title: string): Promise<Job | null> {
    return this.serialized(async () => {
      if (this.busy.has(project.id) || !this.state.projects.has(project.id) || this.destroying.has(project.id)) return null;
      return this.applyPlan(project, kind, title, {});
    });
  }

  private plan(project: Project): Plan {
    return reconcile(this.reconcileInput(project));
  }

  /** `version`: the project's version when it is not in the state yet (a deploy being decided). */
  private reconcileInput(project: Project, version?: Version) {
    return {
      project,
      projectId: project.id,
      version: version ?? (project.currentVersionId ? this.state.versions.get(project.currentVersionId) ?? null : null),
      instances: this.state.instancesOf(project.id),
      nodes: [...this.state.nodes.values()],
      instancesOnNode: (id: string) => this.state.instancesOnNode(id),
      newInstanceId: () => newId('inst'),
    };
  }

  private async applyPlan(project: Project, kind: TreeKind, title: string, params: Record<string, unknown>): Promise<Job | null> {
    return this.startPlan(project, this.plan(project), kind, title, params);
  }

  private async startPlan(project: Project, plan: Plan, kind: TreeKind, title: string, params: Record<string, unknown>): Promise<Job | null> {
    if (isEmptyPlan(plan)) {
      if ((kind === 'deploy' || kind === 'rollback') && project.routedVersionId !== project.currentVersionId) {
        // Nothing to start or stop (e.g. every service scaled to 0): the release still happened.
        await this.saveProject({ ...project, routedVersionId: project.currentVersionId });
      }
      return null;
    }
    return this.startTree(project, buildTree(this, project, plan, kind, title, params));
  }

  private async startTree(project: Project, tree: Parameters<JobEngine['start']>[0]): Promise<Job> {
    const root = await this.jobs.start(tree);
    this.busy.set(project.id, root.id);
    return root;
  }

  private assertIdle(project: Project): void {
    const running = this.busy.get(project.id);
    if (running) {
      throw conflict('project_busy', `${project.name} has job ${running} running; wait for it (\`enjin jobs show ${running}\`) or abort it (\`enjin jobs abort ${running}\`)`);
    }
  }

  /** The one applier: plans are computed and turned into trees one at a time, so two plans never race. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.applying.then(fn, fn);
    // The caller gets the failure through `run`; the chain only needs to know the turn is over.
    this.applying = run.then(() => undefined, () => undefined);
    return run;
  }

  private async treeFinished(root: Job, jobs: Job[]): Promise<void> {
    const projectId = root.params.projectId as string | undefined;
    if (!projectId) return;
    if (this.busy.get(projectId) === root.id) this.busy.delete(projectId);
    const project = this.state.projects.get(projectId);
    if (root.kind === 'destroy') {
      if (root.state !== 'succeeded') this.destroying.delete(projectId);
      return;
    }
    if (!project) return;
    if (root.state === 'succeeded') {
      this.backoff.delete(projectId);
      this.collectVersions();
      return;
    }
    const b = this.backoff.get(projectId) ?? { until: 0, failures: 0 };
    b.failures++;
    b.until = Date.now() + FAILURE_BACKOFF_MS[Math.min(b.failures - 1, FAILURE_BACKOFF_MS.length - 1)];
    this.backoff.set(projectId, b);
    const switched = jobs.some((j) => j.kind === 'switch-routes' && j.state === 'succeeded');
    const target = root.params.targetVersionId as string | undefined;
    if ((root.kind === 'deploy' || root.kind === 'rollback') && !switched && project.currentVersionId === target) {
      // The new version never took traffic: put the previous one back as desired, so a failed or aborted deploy
      // changes nothing. Its started instances are stopped by the revert tree below.
      const previous = (root.params.previousVersionId as string | null) ?? null;
      await this.saveProject({ ...project, currentVersionId: previous });
      const prevNumber = previous ? this.state.versions.get(previous)?.number : null;
      this.jobs.appendLog(root.id, previous ? `desired version set back to v${prevNumber}` : 'no previous version: nothing will run');
      this.backoff.delete(projectId);
      setImmediate(() => void this.converge(this.state.projects.get(projectId)!, 'revert', `revert ${project.name} to ${prevNumber ? `v${prevNumber}` : 'nothing'}`).catch((err: unknown) => log.error({ err, projectId }, 'reverting the project failed; the reconciler tries again')));
    }
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    for (const n of this.state.nodes.values()) {
      if (n.status === 'ready' && n.lastSeenAt && now - Date.parse(n.lastSeenAt) > NODE_DOWN_AFTER_MS) {
        n.status = 'down';
        void this.store.saveNode(n).catch((err: unknown) => log.warn({ err, nodeId: n.id }, 'could not save the node as down; memory keeps it'));
        this.notify({ kind: 'node-down', at: new Date().toISOString(), nodeId: n.id, message: `node ${n.name} has not reported for ${NODE_DOWN_AFTER_MS / 1000} s` });
      }
    }
    for (const p of this.state.projects.values()) {
      if ((this.backoff.get(p.id)?.until ?? 0) > now) continue;
      try {
        await this.converge(p, 'reconcile', `reconcile ${p.name}`);
      } catch {
        // e.g. no ready node: the next tick tries again
      }
    }
  }

  /**
   * Asks every node to drop unpacked versions nobody needs: kept are the versions any project wants or routes to and
   * the newest few of each project, so a rollback does not have to fetch and prepare again.
   */
  private collectVersions(): void {
    const keep = new Set<string>();
    for (const p of this.state.projects.values()) {
      if (p.currentVersionId) keep.add(p.currentVersionId);
      if (p.routedVersionId) keep.add(p.routedVersionId);
      for (const v of this.state.versionsOf(p.id).slice(-KEEP_PREPARED_VERSIONS)) keep.add(v.id);
    }
    for (const n of this.state.nodes.values()) {
      if (n.status !== 'ready') continue;
      void this.bus.request(subjects.agentRpc(n.id), { op: 'gc', keep: [...keep] }, { timeoutMs: 60_000 }).catch((err: unknown) => log.warn({ err, nodeId: n.id }, 'collecting unused versions on the node failed; the next successful tree tries again'));
    }
  }

  private persistInstance(i: Instance): void {
    void this.store.saveInstance(i).catch((err: unknown) => log.warn({ err, instanceId: i.id }, 'could not save the instance; memory keeps it and its next change saves it again'));
  }

  notify(n: Notification): void {
    this.notifications.push(n);
    if (this.notifications.length > 500) this.notifications.splice(0, this.notifications.length - 500);
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
    this.destroying.delete(project.id);
    this.backoff.delete(project.id);
    for (const v of versions) {
      const stillUsed = [...this.state.versions.values()].some((o) => o.sha256 === v.sha256);
      if (!stillUsed) this.packages.remove(v.sha256);
    }
    this.routes.refresh();
  }

  // --- versions ---

  /**
   * Takes an uploaded package as one decision: the project must be idle, its hostnames free and, when it is to be
   * released, a plan possible (a ready node). Only then are the project, the package and the version stored and the
   * tree started. A refused request stores nothing, and concurrent requests are decided one at a time, so thirty
   * deploys at once give one tree and one version. The upload file is moved into the package store or left for the
   * caller to remove.
   */
  async deploy(projectName: string, upload: { sha256: string; size: number; path: string }, manifest: Version['manifest'], release: boolean): Promise<{ project: Project; version: Version; created: boolean; job: Job | null }> {
    return this.serialized(async () => {
      const ws = this.defaultWorkspace();
      const existing = this.state.projectByName(ws.id, projectName) ?? null;
      if (existing && this.destroying.has(existing.id)) throw conflict('project_busy', `${projectName} is being destroyed; wait for that job to end`);
      if (existing) this.assertIdle(existing);
      const clash = hostnameClashes(this.state, existing?.id ?? null, projectName, manifest, this.domain);
      if (clash) throw clash;
      const now = new Date().toISOString();
      const project: Project = existing ?? { id: newId('prj'), workspaceId: ws.id, name: projectName, currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now };
      const same = existing ? this.state.versionsOf(existing.id).find((v) => v.sha256 === upload.sha256) : undefined;
      const number = Math.max(0, ...(existing ? this.state.versionsOf(existing.id).map((v) => v.number) : [])) + 1;
      const version: Version = same ?? { id: newId('ver'), projectId: project.id, number, sha256: upload.sha256, size: upload.size, manifest, createdAt: now };
      // Planned before anything is stored: with no ready node this throws and the request has changed nothing.
      const plan = release ? reconcile(this.reconcileInput({ ...project, currentVersionId: version.id }, version)) : null;

      if (!existing) {
        await this.store.saveProject(project);
        this.state.projects.set(project.id, project);
      }
      if (!same) {
        await this.packages.adopt(upload.sha256, upload.path);
        await this.store.insertVersion(version);
        this.state.versions.set(version.id, version);
      }
      let job: Job | null = null;
      if (plan && !(project.currentVersionId === version.id && isEmptyPlan(plan))) {
        const previous = project.currentVersionId;
        await this.saveProject({ ...this.state.projects.get(project.id)!, currentVersionId: version.id });
        this.backoff.delete(project.id);
        job = await this.startPlan(this.state.projects.get(project.id)!, plan, 'deploy', `deploy ${projectName} v${version.number}`, { previousVersionId: previous, targetVersionId: version.id });
      }
      return { project: this.state.projects.get(project.id)!, version, created: !same, job };
    });
  }
}
