// The one serialized applier: every change to a project's desired state goes through its project's queue (see
// change-queue.ts) and is planned and turned into a job tree here, one at a time, when its turn comes.
import type { Bus } from '../bus/bus.ts';
import { conflict, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { ConfigVars, Job, Project, Version, Workspace } from '../core/model.ts';
import { buildIdOf, configOf, deployCause, nextVersionNumber, releaseOfBuild, sameConfig, storedConfig, type ReleaseMeta } from './releases.ts';
import type { Notification } from '../core/messages.ts';
import type { Store } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';
import type { JobEngine } from './jobs/engine.ts';
import { buildTree, type ActionHost } from './jobs/actions.ts';
import { restartTree } from './jobs/restart-tree.ts';
import { rolloutTree, wantsRollout } from './rollout/rollout-tree.ts';
import { isEmptyPlan, reconcile, type Plan } from './reconcile/reconcile.ts';
import { hostnameClashes } from './hostnames.ts';
import type { ControllerState } from './state.ts';
import type { PackageStore } from './packages.ts';
import { ChangeRunner, type ChangeRequest } from './change-runner.ts';
import { ProjectHolds } from './stop-start.ts';
import { collectVersions } from './version-collection.ts';
import { ForcedLeftovers } from './forced-leftovers.ts';

const log = componentLogger('controller');

export type TreeKind = 'deploy' | 'rollback' | 'config' | 'scale' | 'reconcile' | 'revert' | 'destroy' | 'restart' | 'stop-services' | 'start-services';

/** Trees that roll a new release out: a failure before traffic switched puts the previous one back. */
const RELEASING: ReadonlySet<string> = new Set<TreeKind>(['deploy', 'rollback', 'config']);

const FAILURE_BACKOFF_MS = [15_000, 30_000, 60_000, 120_000, 300_000, 600_000];

/** What the applier needs from the controller: its memory, its writes, and whether it may start trees now. */
export interface ProjectChangesHost {
  readonly state: ControllerState;
  /** rows the applier writes itself (a new project, a new version); the rest goes through `saveProject` */
  readonly store: Pick<Store, 'saveProject' | 'insertVersion'>;
  readonly bus: Bus;
  readonly jobs: JobEngine;
  readonly packages: PackageStore;
  readonly domain: string;
  /** what the trees' jobs act through */
  readonly actions: ActionHost;
  now(): number;
  saveProject(p: Project): Promise<void>;
  defaultWorkspace(): Workspace;
  /** true only once this controller leads and has finished taking over */
  leaderDutiesRunning(): boolean;
  /** tells users something they should act on (instances that cannot be placed); absent in tests */
  notify?(n: Notification): void;
}

export class ProjectChanges {
  /** the queues and the one applier */
  private readonly runner: ChangeRunner;
  private readonly backoff = new Map<string, { until: number; failures: number }>();
  private readonly destroying = new Set<string>();
  /** project id → why some of its instances cannot be placed, as last said (said again only when it changes) */
  private readonly unplacedSaid = new Map<string, string>();
  /** instances stopped or destroyed with --force: each node is told to stop them until it reports them gone */
  readonly leftovers = new ForcedLeftovers();

  /** stop, start, freeze and thaw */
  readonly holds: ProjectHolds;

  constructor(private readonly h: ProjectChangesHost) {
    this.runner = new ChangeRunner(h.jobs, h.state);
    this.holds = new ProjectHolds({
      runner: this.runner, state: h.state, actions: h.actions, leftovers: this.leftovers,
      current: (id) => this.current(id),
      save: async (p) => {
        await this.h.saveProject(p);
        this.backoff.delete(p.id);
      },
      planAndStart: async (p, kind, title, params) => {
        const plan = this.plan(p);
        await this.h.saveProject(p);
        this.backoff.delete(p.id);
        return this.startPlan(this.current(p.id), plan, kind, title, params);
      },
    });
  }

  /** Stepping down: the trees this controller ran are the next leader's to fail, and their failures its to count. */
  forgetTrees(): void {
    this.runner.forgetQueued();
    this.backoff.clear();
  }

  /** Where a queued change stands in its project's queue (see ChangeRunner.queuePlace). */
  queuePlace(rootId: string): { position: number; behind: string | null } | null {
    return this.runner.queuePlace(rootId);
  }

  /** A project being destroyed is gone for lookups already. */
  isDestroying(projectId: string): boolean {
    return this.destroying.has(projectId);
  }

  /** The project's rows are deleted: nothing about it is left to remember. */
  forget(projectId: string): void {
    this.destroying.delete(projectId);
    this.unplacedSaid.delete(projectId);
    this.backoff.delete(projectId);
  }

  /**
   * A new release of an earlier build (a config change, a rollback), stored and rolled out as one decision: `make`
   * builds it from the project as it is when the change runs (one change at a time, so numbers never collide) and
   * returns null when there is nothing to release. Behind a running tree it waits in the queue, and is made and
   * planned when its turn comes (its answer then has no version yet). Without a current release, a config change is
   * only remembered for the first one.
   */
  async releaseBuild(project: Project, kind: 'config' | 'rollback', make: (p: Project) => { version: Version } | { config: ConfigVars | undefined }): Promise<{ version: Version | null; job: Job | null }> {
    return this.runner.serialized(async () => {
      let version: Version | null = null;
      const job = await this.runner.submit(project, {
        category: 'rollout', services: null, kind, title: `${kind === 'config' ? 'release' : 'rollback'} ${project.name}`,
        run: async () => {
          const now = this.current(project.id);
          const made = make(now);
          if ('config' in made) {
            await this.h.saveProject({ ...now, config: made.config, updatedAt: new Date().toISOString() });
            return null;
          }
          version = made.version;
          const previous = now.currentVersionId;
          const next = { ...now, currentVersionId: version.id };
          // Planned before anything is stored: with no ready node this throws and the request has changed nothing.
          const plan = reconcile(this.reconcileInput(next, version));
          await this.h.store.insertVersion(version);
          this.h.state.versions.set(version.id, version);
          await this.h.saveProject(next);
          this.backoff.delete(project.id);
          const title = `${kind === 'config' ? 'release' : 'rollback'} ${now.name} v${version.number} (${version.cause?.description ?? kind})`;
          return this.startPlan(this.current(project.id), plan, kind, title, { previousVersionId: previous, targetVersionId: version.id });
        },
      });
      return { version, job };
    });
  }

  async scale(project: Project, changes: Record<string, number>, by: string): Promise<Job | null> {
    const summary = Object.entries(changes).map(([s, n]) => `${s}=${n}`).join(' ');
    const title = `scale ${project.name} ${summary}`;
    return this.runner.serialized(() => this.runner.submit(project, {
      category: 'scale', services: Object.keys(changes), kind: 'scale', title,
      run: async () => {
        const now = this.current(project.id);
        const next = { ...now, scale: { ...now.scale, ...changes } };
        const plan = this.plan(next);
        await this.h.saveProject(next);
        this.backoff.delete(project.id);
        return this.startPlan(this.current(project.id), plan, 'scale', title, { by });
      },
    }));
  }

  /**
   * A rolling restart of the running instances of `services` (all when empty), one at a time, each replaced by a ready
   * copy before it stops. Null when nothing runs.
   */
  async restart(project: Project, services: string[]): Promise<Job | null> {
    const what = services.length ? services.join(', ') : 'every service';
    return this.runner.serialized(() => this.runner.submit(project, {
      category: 'restart', services: services.length ? services : null, kind: 'restart', title: `restart ${project.name} ${what}`,
      run: async () => {
        const now = this.current(project.id);
        const chosen = this.h.state.instancesOf(project.id)
          .filter((i) => i.desired === 'running' && i.current?.state === 'running' && (!services.length || services.includes(i.service)))
          .sort((a, b) => (a.service === b.service ? (a.id < b.id ? -1 : 1) : a.service < b.service ? -1 : 1));
        if (!chosen.length) return null;
        return this.runner.startTree(now, restartTree(this.h.actions, now, chosen, () => newId('inst'), `restart ${now.name} ${what} (${chosen.length} instance${chosen.length === 1 ? '' : 's'}, one at a time)`));
      },
    }));
  }

  /**
   * `volumes`: remove the project's volumes on the nodes too (otherwise they are kept, for a project of that name).
   * It ends the project's active changes and drops the queued ones. `force`: no waiting for nodes.
   */
  async destroy(project: Project, opts: { volumes?: boolean; force?: boolean } = {}): Promise<Job> {
    return this.runner.serialized(async () => {
      const title = `destroy ${project.name}${opts.volumes ? ' with its volumes' : ''}${opts.force ? ' (forced)' : ''}`;
      const job = await this.runner.submit(project, {
        category: 'destroy', services: null, kind: 'destroy', title, force: opts.force,
        run: async () => {
          this.destroying.add(project.id);
          const plan = reconcile({ ...this.reconcileInput(project), project: null });
          if (opts.force) this.leftovers.remember(this.h.actions, this.h.state.instancesOf(project.id));
          const params = { ...(opts.volumes ? { dropVolumes: true } : {}), ...(opts.force ? { force: true } : {}) };
          return this.runner.startTree(project, buildTree(this.h.actions, project, plan, 'destroy', title, params));
        },
      });
      return job!;
    });
  }

  /** Called by the reconcile loop and after trees end: closes any gap between desired and current, when idle. */
  async converge(project: Project, kind: TreeKind, title: string): Promise<Job | null> {
    return this.runner.serialized(async () => {
      // Only a leader that has finished taking over starts trees (a follower's ending trees must not start new ones).
      if (!this.h.leaderDutiesRunning()) return null;
      const now = this.h.state.projects.get(project.id);
      if (!now || this.destroying.has(project.id)) return null;
      // Frozen: no automatic task. A revert finishes a change an operator asked for, so it still runs.
      if (now.frozen && kind !== 'revert') return null;
      return this.runner.submit(now, { category: 'reconcile', services: null, kind, title, run: () => this.applyPlan(this.current(project.id), kind, title, {}) });
    });
  }

  /** The reconcile loop's turn over the projects; `now` is the tick's time, so a project still backing off waits. */
  async convergeAll(now: number): Promise<void> {
    for (const p of this.h.state.projects.values()) {
      if ((this.backoff.get(p.id)?.until ?? 0) > now) continue;
      try {
        await this.converge(p, 'reconcile', `reconcile ${p.name}`);
      } catch (err) {
        // e.g. no ready node: the next tick tries again (debug: this repeats every tick until a node is back)
        log.debug({ err, project: p.name }, 'no plan could be made this tick; the next tick tries again');
      }
    }
  }

  /**
   * Takes an uploaded package as one decision: the project's hostnames must be free and, when it is to be released
   * now, a plan possible (a ready node). Only then are the project, the package and the version stored and the tree
   * started. Behind a running tree the version is stored and its release waits in the queue (planned when it
   * starts). A refused request stores nothing, and concurrent requests are decided one at a time: a deploy of the
   * version being rolled out (or waiting to be) joins that tree instead of making another. The upload file is moved
   * into the package store or left for the caller to remove.
   */
  async deploy(projectName: string, upload: { sha256: string; size: number; path: string }, manifest: Version['manifest'], release: boolean, meta: ReleaseMeta): Promise<{ project: Project; version: Version; created: boolean; job: Job | null }> {
    return this.runner.serialized(async () => {
      const state = this.h.state;
      const ws = this.h.defaultWorkspace();
      const existing = state.projectByName(ws.id, projectName) ?? null;
      if (existing && this.destroying.has(existing.id)) throw conflict('project_stopping', `${projectName} is being destroyed; wait for that job to end, then deploy it again`);
      const clash = hostnameClashes(state, existing?.id ?? null, projectName, manifest, this.h.domain);
      if (clash) throw clash;
      const now = new Date().toISOString();
      const project: Project = existing ?? { id: newId('prj'), workspaceId: ws.id, name: projectName, currentVersionId: null, routedVersionId: null, scale: {}, createdAt: now, updatedAt: now };
      // The same bytes are the same build: it is released again with the project's config (a new release unless the
      // current one is exactly that), and nothing is unpacked or prepared again.
      const config = storedConfig(configOf(state, project));
      const build = existing ? state.versionsOf(existing.id).find((v) => v.sha256 === upload.sha256 && !v.buildId) : undefined;
      const current = project.currentVersionId ? state.versions.get(project.currentVersionId) : undefined;
      const same = build && current && buildIdOf(current) === build.id && sameConfig(current.config, config) ? current : undefined;
      const version: Version = same
        ?? (build ? releaseOfBuild(state, project, build, config, deployCause(meta), now)
          : { id: newId('ver'), projectId: project.id, number: nextVersionNumber(state, project.id), sha256: upload.sha256, size: upload.size, manifest, createdAt: now, ...(config ? { config } : {}), cause: deployCause(meta) });
      const request: ChangeRequest = {
        category: 'rollout', services: null, kind: 'deploy', title: `deploy ${projectName} v${version.number}`, target: version.id,
        run: () => this.releaseVersion(project.id, version.id),
      };
      // A deploy of what is already being rolled out (or waits to be) is that change: its tree is the answer.
      const joined = release && existing ? this.runner.changeRollingOut(existing.id, version.id) : null;
      const admission = release && !joined ? this.runner.admit(project, request) : null;
      // Planned before anything is stored when it runs now: with no ready node this throws and nothing is stored.
      if (admission?.now) placedWhole(reconcile(this.reconcileInput({ ...project, currentVersionId: version.id }, version)));

      if (!existing) {
        await this.h.store.saveProject(project);
        state.projects.set(project.id, project);
      }
      if (!same) {
        if (!build) await this.h.packages.adopt(upload.sha256, upload.path);
        await this.h.store.insertVersion(version);
        state.versions.set(version.id, version);
      }
      let job: Job | null = joined;
      if (admission) job = await this.runner.act(this.current(project.id), request, admission);
      return { project: state.projects.get(project.id)!, version, created: !same, job };
    });
  }

  /** The release of a stored version: planned with the project as it is now; null when it runs already. */
  private async releaseVersion(projectId: string, versionId: string): Promise<Job | null> {
    const project = this.current(projectId);
    const version = this.h.state.versions.get(versionId);
    if (!version) throw notFound(`version ${versionId} of ${project.name}`);
    const plan = placedWhole(reconcile(this.reconcileInput({ ...project, currentVersionId: version.id }, version)));
    if (project.currentVersionId === version.id && isEmptyPlan(plan)) return null;
    const previous = project.currentVersionId;
    await this.h.saveProject({ ...project, currentVersionId: version.id });
    this.backoff.delete(projectId);
    const now = this.current(projectId);
    const [title, params] = [`deploy ${project.name} v${version.number}`, { previousVersionId: previous, targetVersionId: version.id }];
    // A service with batches or canaries rolls out step by step, health-gated; the rest switch in one tree.
    if (wantsRollout(this.h.state, now, version)) return this.runner.startTree(now, rolloutTree(this.h.state, now, version, 'deploy', title, params));
    return this.startPlan(now, plan, 'deploy', title, params);
  }

  private current(projectId: string): Project {
    const p = this.h.state.projects.get(projectId);
    if (!p || this.destroying.has(projectId)) throw notFound(`project ${projectId}`, 'it was destroyed while this change waited');
    return p;
  }

  /** The plan for a change someone asked for: refused whole when instances of it cannot be placed. */
  private plan(project: Project): Plan {
    return placedWhole(reconcile(this.reconcileInput(project)));
  }

  /** `version`: the project's version when it is not in the state yet (a deploy being decided). */
  private reconcileInput(project: Project, version?: Version) {
    const state = this.h.state;
    return {
      project,
      projectId: project.id,
      version: version ?? (project.currentVersionId ? state.versions.get(project.currentVersionId) ?? null : null),
      instances: state.instancesOf(project.id),
      nodes: [...state.nodes.values()],
      instancesOnNode: (id: string) => state.instancesOnNode(id),
      newInstanceId: () => newId('inst'),
      workspace: state.workspaces.get(project.workspaceId)?.name ?? 'default',
    };
  }

  /** The reconcile loop's plan: what can be placed is, and what cannot is said once (until the reason changes). */
  private async applyPlan(project: Project, kind: TreeKind, title: string, params: Record<string, unknown>): Promise<Job | null> {
    const plan = reconcile(this.reconcileInput(project));
    const why = plan.unplaced.map((u) => u.error.message).join('; ');
    if (why && this.unplacedSaid.get(project.id) !== why) {
      log.warn({ project: project.name }, why);
      this.h.notify?.({ kind: 'info', at: new Date(this.h.now()).toISOString(), project: project.name, message: why });
    }
    if (why) this.unplacedSaid.set(project.id, why);
    else this.unplacedSaid.delete(project.id);
    return this.startPlan(project, plan, kind, title, params);
  }

  private async startPlan(project: Project, plan: Plan, kind: TreeKind, title: string, params: Record<string, unknown>): Promise<Job | null> {
    if (isEmptyPlan(plan)) {
      if (RELEASING.has(kind) && project.routedVersionId !== project.currentVersionId) {
        // Nothing to start or stop (e.g. every service scaled to 0): the release still happened.
        await this.h.saveProject({ ...project, routedVersionId: project.currentVersionId });
      }
      return null;
    }
    return this.runner.startTree(project, buildTree(this.h.actions, project, plan, kind, title, params));
  }

  /**
   * The job engine's word that a tree ended: its place in the queue is free (the next change may start), and a
   * failure backs the project off or reverts it.
   */
  async treeFinished(root: Job, jobs: Job[]): Promise<void> {
    const projectId = root.params.projectId as string | undefined;
    if (!projectId) return;
    this.runner.treeEnded(root.id);
    try {
      await this.afterTree(projectId, root, jobs);
    } finally {
      this.runner.pump(projectId);
    }
  }

  private async afterTree(projectId: string, root: Job, jobs: Job[]): Promise<void> {
    const project = this.h.state.projects.get(projectId);
    if (root.kind === 'destroy') {
      if (root.state !== 'succeeded') this.destroying.delete(projectId);
      // Its unpacked versions are nobody's now: the nodes drop them.
      else collectVersions(this.h.state, this.h.bus);
      return;
    }
    if (!project) return;
    if (root.state === 'succeeded') {
      this.backoff.delete(projectId);
      collectVersions(this.h.state, this.h.bus);
      return;
    }
    const b = this.backoff.get(projectId) ?? { until: 0, failures: 0 };
    b.failures++;
    b.until = this.h.now() + FAILURE_BACKOFF_MS[Math.min(b.failures - 1, FAILURE_BACKOFF_MS.length - 1)];
    this.backoff.set(projectId, b);
    const switched = jobs.some((j) => j.kind === 'switch-routes' && j.state === 'succeeded');
    const target = root.params.targetVersionId as string | undefined;
    if (RELEASING.has(root.kind) && !switched && project.currentVersionId === target) {
      // The new version never took traffic: put the previous one back as desired, so a failed or aborted deploy
      // changes nothing. Its started instances are stopped by the revert tree below.
      const previous = (root.params.previousVersionId as string | null) ?? null;
      await this.h.saveProject({ ...project, currentVersionId: previous });
      const prevNumber = previous ? this.h.state.versions.get(previous)?.number : null;
      this.h.jobs.appendLog(root.id, previous ? `desired version set back to v${prevNumber}` : 'no previous version: nothing will run');
      this.backoff.delete(projectId);
      setImmediate(() => void this.converge(this.h.state.projects.get(projectId)!, 'revert', `revert ${project.name} to ${prevNumber ? `v${prevNumber}` : 'nothing'}`).catch((err: unknown) => log.error({ err, projectId }, 'reverting the project failed; the reconciler tries again')));
    }
  }
}

/** A plan someone asked for (a deploy, a scale) is refused whole if some of its instances cannot be placed. */
function placedWhole(plan: Plan): Plan {
  if (plan.unplaced.length) throw plan.unplaced[0].error;
  return plan;
}
