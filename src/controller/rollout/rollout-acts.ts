// What a rollout step does on the cluster, through the same job actions a plain deploy uses: prepare a version on
// a node, run the release command, start instances where the scheduler places them (the start action: done once
// their node reports them running), and stop instances drained (the stop action: out of the routes first).
import type { Instance, Job, Project, Version } from '../../core/model.ts';
import { newId } from '../../core/ids.ts';
import type { ActionHost } from '../jobs/actions.ts';
import type { JobAction } from '../jobs/engine.ts';
import { reconcile, type PlannedStart, type PlannedStop } from '../reconcile/reconcile.ts';

export interface RolloutActsContext {
  host: ActionHost;
  /** the job actions of the controller: prepare, release, start and stop are used */
  actions: Record<string, JobAction>;
  job: Job;
  root: Job;
  log: (line: string) => void;
}

export class RolloutActs {
  /** `versionId@nodeId` prepared by this rollout */
  private readonly prepared = new Set<string>();

  constructor(private readonly ctx: RolloutActsContext) {}

  /** A job context for one of the controller's actions, logging into the rollout job's log. */
  private run(kind: string, params: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const { job, root, log } = this.ctx;
    return this.ctx.actions[kind]({ job: { ...job, params: { projectId: job.params.projectId, ...params } }, root, log, signal });
  }

  /** The release command of `version`, once, on the first node its first start will use (after preparing it there). */
  async release(project: Project, version: Version, service: string, signal: AbortSignal): Promise<void> {
    const [first] = this.place(project, version, service, 1);
    await this.prepare(version, first.nodeId, signal);
    await this.run('release', { versionId: version.id, nodeId: first.nodeId }, signal);
  }

  /** Starts `count` instances of `service` at `version`; resolves with their ids once their nodes report them running. */
  async start(project: Project, version: Version, service: string, count: number, signal: AbortSignal): Promise<string[]> {
    const starts = this.place(project, version, service, count);
    await Promise.all([...new Set(starts.map((s) => s.nodeId))].map((n) => this.prepare(version, n, signal)));
    await this.run('start', { starts }, signal);
    return starts.map((s) => s.instanceId);
  }

  /** Stops instances drained: out of the route table, in-flight requests finished, then stopped on their nodes. */
  async stop(instanceIds: string[], reason: string, signal: AbortSignal): Promise<void> {
    const stops: PlannedStop[] = instanceIds
      .map((id) => this.ctx.host.state.instances.get(id))
      .filter((i): i is Instance => !!i)
      .map((i) => ({ instanceId: i.id, service: i.service, versionId: i.versionId, nodeId: i.nodeId, reason }));
    if (stops.length) await this.run('stop', { stops }, signal);
  }

  private async prepare(version: Version, nodeId: string, signal: AbortSignal): Promise<void> {
    const key = `${version.id}@${nodeId}`;
    if (this.prepared.has(key)) return;
    await this.run('prepare', { versionId: version.id, nodeId }, signal);
    this.prepared.add(key);
  }

  /**
   * Where `count` more instances of `service` at `version` go: the reconciler's placement (spread, volumes' home
   * node), asked for a count of that version's live instances plus `count` and nothing else of the project changed.
   */
  private place(project: Project, version: Version, service: string, count: number): PlannedStart[] {
    const state = this.ctx.host.state;
    const instances = state.instancesOf(project.id);
    const live = (name: string) => instances.filter((i) => i.versionId === version.id && i.service === name && i.desired === 'running' && i.current?.state !== 'failed').length;
    const scale = Object.fromEntries(Object.keys(version.manifest.services).map((name) => [name, live(name) + (name === service ? count : 0)]));
    const plan = reconcile({
      project: { ...project, scale },
      projectId: project.id,
      version,
      instances,
      nodes: [...state.nodes.values()],
      instancesOnNode: (id) => state.instancesOnNode(id),
      newInstanceId: () => newId('inst'),
      workspace: state.workspaces.get(project.workspaceId)?.name ?? 'default',
    });
    const unplaced = plan.unplaced.find((u) => u.service === service);
    if (unplaced) throw unplaced.error;
    const starts = plan.starts.filter((s) => s.service === service).slice(0, count);
    // The reconciler's count left out instances on a node that is down; anything short of `count` is made up next step.
    return starts;
  }
}
