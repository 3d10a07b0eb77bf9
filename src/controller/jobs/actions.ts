// What each kind of job does, and how a reconciler plan becomes a job tree:
//   root (deploy, scale, …)
//   └─ stop old instances              (drained first)
//      └─ switch routes                (only when the routed version changes)
//         └─ start instances on NODE   (one per node; replies when ready)
//            └─ prepare vN on NODE     (fetch, verify, unpack, prepare commands)
// Leaves run first, so the chain reads bottom-up: nothing old stops before everything new is ready.
import type { Bus } from '../../bus/bus.ts';
import { EnjinError } from '../../core/errors.ts';
import type { Instance, Job, Project, Version } from '../../core/model.ts';
import { subjects, type AgentReply, type InstanceSpec, type VersionSpec } from '../../core/messages.ts';
import type { ControllerState } from '../state.ts';
import type { JobAction, JobSpec } from './engine.ts';
import type { Plan, PlannedStart, PlannedStop } from '../reconcile/reconcile.ts';
import type { RoutePublisher } from '../routes/publisher.ts';

/** The parts of the controller job actions use. */
export interface ActionHost {
  readonly state: ControllerState;
  readonly bus: Bus;
  readonly routes: RoutePublisher;
  readonly nodeToken: string;
  readonly apiUrl: string;
  readonly drainTimeoutMs: number;
  saveProject(p: Project): Promise<void>;
  saveInstance(i: Instance): Promise<void>;
  forgetInstance(id: string): Promise<void>;
  forgetProject(p: Project): Promise<void>;
}

const PREPARE_TIMEOUT_MS = 30 * 60_000;

export function buildTree(host: ActionHost, project: Project, plan: Plan, kind: string, title: string, params: Record<string, unknown>): JobSpec {
  const ws = host.state.workspaces.get(project.workspaceId)?.name ?? 'default';
  const version = plan.targetVersionId ? host.state.versions.get(plan.targetVersionId) : undefined;
  const vtag = version ? `v${version.number}` : undefined;
  const nodeName = (id: string) => host.state.nodes.get(id)?.name ?? id;

  // A job about one service carries its tag, so `enjin jobs --service web` finds it.
  const onlyService = (services: string[]) => (new Set(services).size === 1 ? services[0] : undefined);
  let chain: JobSpec[] = [];
  const startsByNode = new Map<string, PlannedStart[]>();
  for (const s of plan.starts) startsByNode.set(s.nodeId, [...(startsByNode.get(s.nodeId) ?? []), s]);
  for (const [nodeId, starts] of startsByNode) {
    const summary = summarize(starts.map((s) => s.service));
    chain.push({
      kind: 'start',
      title: `start ${summary} on ${nodeName(nodeId)}`,
      tags: { version: vtag, node: nodeId, service: onlyService(starts.map((s) => s.service)) },
      params: { projectId: project.id, starts },
      children: [{ kind: 'prepare', title: `prepare ${project.name} ${vtag} on ${nodeName(nodeId)}`, tags: { version: vtag, node: nodeId }, params: { projectId: project.id, versionId: plan.targetVersionId, nodeId } }],
    });
  }
  if (plan.switchRoutes) {
    chain = [{ kind: 'switch-routes', title: plan.targetVersionId ? `switch routes to ${vtag}` : 'remove routes', params: { projectId: project.id, versionId: plan.targetVersionId }, children: chain }];
  }
  if (plan.stops.length) {
    const summary = summarize(plan.stops.map((s) => s.service));
    chain = [{ kind: 'stop', title: `stop ${summary}`, tags: { service: onlyService(plan.stops.map((s) => s.service)) }, params: { projectId: project.id, stops: plan.stops }, children: chain }];
  }
  return {
    kind,
    title,
    tags: { workspace: ws, project: project.name, version: vtag, service: onlyService([...plan.starts, ...plan.stops].map((s) => s.service)) },
    params: { ...params, projectId: project.id, targetVersionId: plan.targetVersionId },
    children: chain,
  };
}

/** "web ×2, worker" */
function summarize(services: string[]): string {
  const counts = new Map<string, number>();
  for (const s of services) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => (n > 1 ? `${s} ×${n}` : s)).join(', ');
}

function versionSpec(host: ActionHost, project: Project, version: Version): VersionSpec {
  return {
    versionId: version.id,
    project: project.name,
    sha256: version.sha256,
    size: version.size,
    url: `${host.apiUrl}/v1/versions/${version.id}/package`,
    token: host.nodeToken,
    prepare: version.manifest.prepare,
    env: version.manifest.env,
  };
}

function instanceSpec(host: ActionHost, project: Project, version: Version, instanceId: string, service: string): InstanceSpec {
  const spec = version.manifest.services[service];
  const ws = host.state.workspaces.get(project.workspaceId)?.name ?? 'default';
  return {
    instanceId,
    workspace: ws,
    project: project.name,
    service,
    versionId: version.id,
    command: spec.command,
    env: { ...version.manifest.env, ...spec.env, ENJIN_PROJECT: project.name, ENJIN_SERVICE: service, ENJIN_VERSION: String(version.number), ENJIN_INSTANCE: instanceId },
    listens: spec.listens,
    healthPath: spec.health?.http ?? null,
    startTimeout: spec.health?.startTimeout ?? 60,
    stopTimeout: spec.stopTimeout,
  };
}

/** Rejects when the job is aborted, so a long wait never outlives its tree. */
function abortable<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export function jobActions(host: ActionHost): Record<string, JobAction> {
  const projectOf = (job: Job): Project => {
    const p = host.state.projects.get(job.params.projectId as string);
    if (!p) throw new EnjinError('not_found', 'the project no longer exists', { status: 404 });
    return p;
  };
  const versionOf = (id: unknown): Version => {
    const v = host.state.versions.get(id as string);
    if (!v) throw new EnjinError('not_found', `version ${String(id)} no longer exists`, { status: 404 });
    return v;
  };

  const root: JobAction = async ({ job, log }) => {
    const project = host.state.projects.get(job.params.projectId as string);
    const target = job.params.targetVersionId as string | null;
    if (project && target) {
      const v = host.state.versions.get(target);
      log(`${project.name} v${v?.number} is running`);
    }
  };

  const prepare: JobAction = async ({ job, log, signal }) => {
    const project = projectOf(job);
    const version = versionOf(job.params.versionId);
    const nodeId = job.params.nodeId as string;
    const rpc = subjects.agentRpc(nodeId);
    log(`fetching package ${version.sha256.slice(0, 12)} (${version.size} bytes), then ${version.manifest.prepare.length} prepare command(s)`);
    // Follow the node's prepare log while it runs, so a long `npm ci` shows its progress in the job's log.
    let offset = 0;
    let partial = '';
    const follow = async (final: boolean) => {
      try {
        for (;;) {
          const r = await host.bus.request<AgentReply>(rpc, { op: 'prepare-log', versionId: version.id, offset }, { timeoutMs: 5000 });
          if (r.op !== 'prepare-log' || !r.log) break;
          offset = r.offset;
          const lines = (partial + r.log).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) log(line);
          if (!final) break;
        }
        if (final && partial) log(partial);
      } catch {
        // the log is a courtesy; the prepare's own outcome is what counts
      }
    };
    let following = Promise.resolve();
    const timer = setInterval(() => { following = following.then(() => follow(false)); }, 1000);
    const onAbort = () => void host.bus.request(rpc, { op: 'cancel-prepare', versionId: version.id }, { timeoutMs: 5000 }).catch(() => {});
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await abortable(signal, host.bus.request<AgentReply>(rpc, { op: 'prepare', version: versionSpec(host, project, version) }, { timeoutMs: PREPARE_TIMEOUT_MS }));
    } finally {
      clearInterval(timer);
      signal.removeEventListener('abort', onAbort);
      await following;
      await follow(true);
    }
  };

  const start: JobAction = async ({ job, log, signal }) => {
    const project = projectOf(job);
    const starts = job.params.starts as PlannedStart[];
    const created: Instance[] = [];
    try {
      await abortable(signal, Promise.all(starts.map(async (s) => {
        const version = versionOf(s.versionId);
        const instance: Instance = {
          id: s.instanceId, workspaceId: project.workspaceId, projectId: project.id, service: s.service, versionId: s.versionId,
          nodeId: s.nodeId, desired: 'running', createdAt: new Date().toISOString(), current: null,
        };
        await host.saveInstance(instance);
        created.push(instance);
        const spec = instanceSpec(host, project, version, s.instanceId, s.service);
        const timeoutMs = (spec.startTimeout + 30) * 1000;
        const reply = await host.bus.request<AgentReply>(subjects.agentRpc(s.nodeId), { op: 'start', instance: spec }, { timeoutMs });
        if (reply.op === 'start') {
          const current = host.state.instances.get(s.instanceId);
          if (current) await host.saveInstance({ ...current, current: reply.report.current });
          const where = reply.report.current.port ? ` on ${reply.report.current.host}:${reply.report.current.port}` : '';
          log(`${s.service} ${s.instanceId} ready${where} (pid ${reply.report.current.pid})`);
        }
      })));
    } catch (err) {
      // Undo this job's own work: instances it started must not linger when the tree fails or is aborted.
      log(`stopping the ${created.length} instance(s) this job started`);
      await Promise.all(created.map((i) => stopOne(host, i, log).catch(async (stopErr: Error) => {
        // Left as it is, it would count as running for ever ("nothing to do"): mark it unwanted, and the reconciler
        // stops and forgets it once its node answers.
        log(`could not stop ${i.service} ${i.id} (${stopErr.message}); it will be stopped later`);
        const current = host.state.instances.get(i.id);
        if (current) await host.saveInstance({ ...current, desired: 'stopped' });
      })));
      throw err;
    }
  };

  const switchRoutes: JobAction = async ({ job, log, signal }) => {
    const project = projectOf(job);
    const versionId = (job.params.versionId as string | null) ?? null;
    await host.saveProject({ ...project, routedVersionId: versionId });
    const seq = host.routes.refreshNow();
    const table = host.routes.table;
    const keys = Object.values(table.services).filter((s) => s.key.split('/')[1] === project.name);
    for (const s of keys) log(`${s.key}: ${s.upstreams.length} upstream(s)`);
    await host.routes.waitForRouters({ seq, timeoutMs: 5000, signal, log });
    log(`route table ${seq} applied by ${host.routes.routers.size} router(s)`);
  };

  const stop: JobAction = async ({ job, log, signal }) => {
    const stops = job.params.stops as PlannedStop[];
    const instances = stops.map((s) => host.state.instances.get(s.instanceId)).filter((i): i is Instance => !!i);
    // Take them out of the route table first, then let requests in flight finish before the processes go.
    for (const i of instances) await host.saveInstance({ ...i, desired: 'stopped' });
    const seq = host.routes.refreshNow();
    await host.routes.waitForRouters({ seq, instanceIds: instances.map((i) => i.id), timeoutMs: host.drainTimeoutMs, signal, log });
    await abortable(signal, Promise.all(instances.map((i) => stopOne(host, i, log, stops.find((s) => s.instanceId === i.id)?.reason))));
  };

  const destroy: JobAction = async ({ job, log }) => {
    const project = projectOf(job);
    await host.forgetProject(project);
    log(`project ${project.name} removed with its versions`);
  };

  return { deploy: root, rollback: root, scale: root, reconcile: root, revert: root, destroy, prepare, start, 'switch-routes': switchRoutes, stop };
}

async function stopOne(host: ActionHost, i: Instance, log: (l: string) => void, reason?: string): Promise<void> {
  const node = host.state.nodes.get(i.nodeId);
  try {
    await host.bus.request<AgentReply>(subjects.agentRpc(i.nodeId), { op: 'stop', instanceId: i.id }, { timeoutMs: 330_000 });
    log(`stopped ${i.service} ${i.id}${reason ? ` (${reason})` : ''}`);
  } catch (err) {
    if (node?.status === 'ready') throw err;
    // A node that is down cannot answer; its agent drops instances it is no longer told about when it comes back.
    log(`node ${node?.name ?? i.nodeId} is down; forgetting ${i.id} without stopping it (${(err as Error).message})`);
  }
  await host.forgetInstance(i.id);
}
