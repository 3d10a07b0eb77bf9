// What each kind of job does, and how a reconciler plan becomes a job tree:
//   root (deploy, scale, …)
//   └─ stop old instances              (drained first)
//      └─ switch routes                (only when the routed version changes)
//         └─ start instances on NODE   (one per node; done when the node reports them running)
//            └─ prepare vN on NODE     (fetch, verify, unpack, prepare commands)
// Leaves run first, so the chain reads bottom-up: nothing old stops before everything new is ready.
import type { Bus } from '../../bus/bus.ts';
import { manifestVolumes } from '../../core/volumes.ts';
import { dropProjectVolumes } from '../volumes.ts';
import { EnjinError } from '../../core/errors.ts';
import type { Instance, Job, Project, Version } from '../../core/model.ts';
import { subjects, type AgentReply, type Notification } from '../../core/messages.ts';
import type { ControllerState } from '../state.ts';
import type { JobAction, JobSpec } from './engine.ts';
import type { Plan, PlannedStart, PlannedStop } from '../reconcile/reconcile.ts';
import type { RoutePublisher } from '../routes/publisher.ts';
import { buildVersion, instanceSpec, releaseEnv, versionSpec } from './specs.ts';
import { reportedRemoved, reportedRunning, waitForInstance } from './instance-wait.ts';
import { drainInstances } from './drain.ts';
import { componentLogger } from '../../log/logger.ts';

/** enjin's own log (a job's log is `log` in each action) */
const slog = componentLogger('jobs');

/** The parts of the controller job actions use. */
export interface ActionHost {
  readonly state: ControllerState;
  readonly bus: Bus;
  readonly routes: RoutePublisher;
  /** caps every service's `drain`, ms (Infinity: no cap; tests shorten it) */
  readonly drainTimeoutMs: number;
  saveProject(p: Project): Promise<void>;
  saveInstance(i: Instance): Promise<void>;
  forgetInstance(id: string): Promise<void>;
  forgetProject(p: Project): Promise<void>;
  /** one-off events for `enjin events` (a rollout rolled back); absent in tests that do not look */
  notify?(n: Notification): void;
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
  // A deploy of a version with a release command runs it once, on the first node, after that node's prepare and
  // before any instance starts anywhere: one start job then waits on the release and every node's prepare.
  const release = kind === 'deploy' && version?.manifest.release && chain.length ? version.manifest.release : null;
  if (release) {
    const prepares = chain.flatMap((c) => c.children ?? []);
    const [first, ...others] = prepares;
    const starts = chain.flatMap((c) => (c.params?.starts as PlannedStart[]) ?? []);
    const nodeNames = [...new Set(starts.map((s) => nodeName(s.nodeId)))].join(', ');
    const releaseJob: JobSpec = {
      kind: 'release',
      title: `release ${project.name} ${vtag} on ${nodeName(first.params!.nodeId as string)}: ${release.length > 60 ? `${release.slice(0, 57)}…` : release}`,
      tags: { version: vtag, node: first.params!.nodeId as string },
      params: { projectId: project.id, versionId: plan.targetVersionId, nodeId: first.params!.nodeId },
      children: [first],
    };
    chain = [{
      kind: 'start',
      title: `start ${summarize(starts.map((s) => s.service))} on ${nodeNames}`,
      tags: { version: vtag, service: onlyService(starts.map((s) => s.service)) },
      params: { projectId: project.id, starts },
      children: [releaseJob, ...others],
    }];
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

/** Bytes of a version's prepare log already on its node (0: none, the prepare is new); 0 when the node cannot say. */
async function preparedLogEnd(bus: Bus, rpc: string, versionId: string): Promise<number> {
  let offset = 0;
  try {
    // The log is capped on the node, so this is a few reads at most.
    for (let reads = 0; reads < 64; reads++) {
      const r = await bus.request<AgentReply>(rpc, { op: 'prepare-log', versionId, offset }, { timeoutMs: 5000 });
      if (r.op !== 'prepare-log' || !r.log || r.offset <= offset) break;
      offset = r.offset;
    }
  } catch (err) {
    slog.debug({ err, versionId }, 'reading the node\'s prepare log failed; the prepare log is followed from its start');
    return 0;
  }
  return offset;
}

/** Lines of an instance's log the start job shows when it failed: enough for a stack trace's head. */
const FAILED_TAIL_LINES = 20;

/** Appends the last lines an instance logged (the app's output, without the agent's time stamps) to a job's log. */
export async function logInstanceTail(bus: Bus, i: Instance, log: (l: string) => void): Promise<void> {
  try {
    const r = await bus.request<AgentReply>(subjects.agentRpc(i.nodeId), { op: 'logs', instanceId: i.id, offset: -1, maxBytes: 8192 }, { timeoutMs: 5000 });
    if (r.op !== 'logs' || !r.data) return;
    const all = r.data.replace(/\n$/, '').split('\n');
    // A read from the end may begin inside a line: drop that piece.
    if (r.size > Buffer.byteLength(r.data)) all.shift();
    const lines = all.slice(-FAILED_TAIL_LINES).map((l) => l.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, ''));
    log(`last ${lines.length} line(s) of the log of ${i.service} ${i.id}:`);
    for (const l of lines) log(`  ${l}`);
  } catch (err) {
    log(`the log of ${i.service} ${i.id} could not be read (${(err as Error).message}); see \`enjin logs ${i.service}\``);
  }
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
    // A config change or rollback runs an earlier version's build: that build is what a node prepares.
    const release = versionOf(job.params.versionId);
    const version = buildVersion(host, release);
    const nodeId = job.params.nodeId as string;
    const rpc = subjects.agentRpc(nodeId);
    // Follow the node's prepare log while it runs, so a long `npm ci` shows its progress in the job's log.
    let offset = 0;
    let partial = '';
    let shown = 0;
    const follow = async (final: boolean) => {
      try {
        for (;;) {
          const r = await host.bus.request<AgentReply>(rpc, { op: 'prepare-log', versionId: version.id, offset }, { timeoutMs: 5000 });
          if (r.op !== 'prepare-log' || !r.log) break;
          offset = r.offset;
          const lines = (partial + r.log).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) log(line);
          shown += lines.length;
          if (!final) break;
        }
        if (final && partial) log(partial);
      } catch (err) {
        // The log is a courtesy (the prepare's own outcome is what counts), but a node that stops answering for it
        // is worth a line in enjin's log.
        slog.debug({ err, nodeId, versionId: version.id }, 'reading the node\'s prepare log failed; the next read tries again');
      }
    };
    // A version prepared here before (a scale, a restart, a second deploy of the same build) has its whole log on
    // the node already: start following at its end, so the output of an earlier prepare is not printed again.
    const earlier = await preparedLogEnd(host.bus, rpc, version.id);
    offset = earlier;
    if (earlier === 0) log(`fetching package ${version.sha256.slice(0, 12)} (${version.size} bytes), then ${version.manifest.prepare.length} prepare command(s)`);
    let following = Promise.resolve();
    const timer = setInterval(() => { following = following.then(() => follow(false)); }, 1000);
    const onAbort = () => void host.bus.request(rpc, { op: 'cancel-prepare', versionId: version.id }, { timeoutMs: 5000 }).catch((err: unknown) => {
      // The deploy is aborted either way; the agent kills what is left of the prepare when it next stops.
      log(`could not tell the node to cancel the prepare: ${(err as Error).message}`);
      slog.warn({ err, nodeId, versionId: version.id }, 'cancelling a prepare on its node failed');
    });
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await abortable(signal, host.bus.request<AgentReply>(rpc, { op: 'prepare', version: versionSpec(host, project, version) }, { timeoutMs: PREPARE_TIMEOUT_MS }));
    } finally {
      clearInterval(timer);
      signal.removeEventListener('abort', onAbort);
      await following;
      await follow(true);
    }
    if (earlier > 0 && shown === 0) log(`${project.name} v${release.number}${release.id === version.id ? '' : ` (the build of v${version.number})`} is already prepared on ${host.state.nodes.get(nodeId)?.name ?? nodeId}`);
  };

  // The release phase: the version's `release:` command, once, on one node; a failure fails the deploy before any
  // instance of it starts, so nothing changes.
  const releaseAction: JobAction = async ({ job, log, signal }) => {
    const project = projectOf(job);
    const release = versionOf(job.params.versionId);
    const version = buildVersion(host, release);
    const nodeId = job.params.nodeId as string;
    const command = release.manifest.release;
    if (!command) return;
    log(`running \`${command}\` on ${host.state.nodes.get(nodeId)?.name ?? nodeId}`);
    const rpc = subjects.agentRpc(nodeId);
    const onAbort = () => void host.bus.request(rpc, { op: 'cancel-prepare', versionId: version.id }, { timeoutMs: 5000 }).catch((err: unknown) => {
      log(`could not tell the node to stop the release command: ${(err as Error).message}`);
      slog.warn({ err, nodeId, versionId: version.id }, 'cancelling a release command on its node failed');
    });
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      // A migration sees the project's volumes (its SQLite file) as its instances do.
      const volumes = manifestVolumes(release.manifest);
      const withVolumes = Object.keys(volumes).length ? { volumes, workspace: host.state.workspaces.get(project.workspaceId)?.name ?? 'default' } : {};
      const r = await abortable(signal, host.bus.request<AgentReply>(rpc, { op: 'release', version: versionSpec(host, project, version), command, env: releaseEnv(project, release, null), ...withVolumes }, { timeoutMs: PREPARE_TIMEOUT_MS }));
      if (r.op === 'release') for (const line of r.log.split('\n').filter(Boolean)) log(line);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  };

  // The start sets desired state and waits for the node's report: replies are not state, the node's report is.
  const start: JobAction = async ({ job, log, signal }) => {
    const project = projectOf(job);
    const starts = job.params.starts as PlannedStart[];
    const created: Instance[] = [];
    try {
      await Promise.all(starts.map(async (s) => {
        const version = versionOf(s.versionId);
        const instance: Instance = {
          id: s.instanceId, workspaceId: project.workspaceId, projectId: project.id, service: s.service, versionId: s.versionId,
          nodeId: s.nodeId, desired: 'running', createdAt: new Date().toISOString(), current: null,
        };
        if (signal.aborted) throw signal.reason;
        await host.saveInstance(instance);
        created.push(instance);
        const spec = instanceSpec(host, project, version, s.instanceId, s.service);
        const nodeName = host.state.nodes.get(s.nodeId)?.name ?? s.nodeId;
        const timeoutMs = (spec.startTimeout + 30) * 1000;
        await waitForInstance(host.state, s.instanceId, reportedRunning(nodeName), {
          timeoutMs,
          signal,
          onTimeout: () => new EnjinError('instance_not_reported', `${s.service} ${s.instanceId} was not reported running by node ${nodeName} within ${timeoutMs / 1000} s; see \`enjin logs\` and \`enjin nodes\``, { status: 504 }),
        });
        const current = host.state.instances.get(s.instanceId)?.current;
        const where = current?.port ? ` on ${current.host}:${current.port}` : '';
        log(`${s.service} ${s.instanceId} ready${where} (pid ${current?.pid})`);
      }));
    } catch (err) {
      // What the app printed is what tells a user why it failed: its log's last lines, once, in this job's log.
      if (err instanceof EnjinError && err.code === 'instance_start_failed') {
        const failed = created.find((i) => err.message.includes(i.id));
        if (failed) await logInstanceTail(host.bus, failed, log);
      }
      // Undo this job's own work: instances it started must not linger when the tree fails or is aborted.
      log(`stopping the ${created.length} instance(s) this job started`);
      await Promise.all(created.map((i) => stopOne(host, i, log, 'its start did not complete').catch((stopErr: Error) => {
        // Its row stays with desired 'stopped': the node stops it when it hears, and the reconciler follows it up.
        log(`${i.service} ${i.id} is not confirmed stopped yet (${stopErr.message}); it will be stopped later`);
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

  const stop: JobAction = async ({ job, root, log, signal }) => {
    const stops = job.params.stops as PlannedStop[];
    const instances = stops.map((s) => host.state.instances.get(s.instanceId)).filter((i): i is Instance => !!i);
    // Take them out of the route table first, then let requests in flight finish before the node is told to stop them.
    const force = root.params.force === true;
    await drainInstances(host, instances, { signal, log, force });
    await Promise.all(instances.map((i) => stopOne(host, i, log, stops.find((s) => s.instanceId === i.id)?.reason, signal, force)));
  };

  const destroy: JobAction = async ({ job, log }) => {
    const project = projectOf(job);
    // `destroy --volumes`: its data goes too, before the project does (a node that cannot remove it fails the job).
    if (job.params.dropVolumes) await dropProjectVolumes(host.state, host.bus, host.state.workspaces.get(project.workspaceId)?.name ?? 'default', project.name, log);
    await host.forgetProject(project);
    log(`project ${project.name} removed with its versions`);
  };

  return { deploy: root, rollback: root, config: root, scale: root, reconcile: root, revert: root, restart: root, 'stop-services': root, 'start-services': root, release: releaseAction, destroy, prepare, start, 'switch-routes': switchRoutes, stop };
}

/**
 * Sets the instance's desired state to stopped (if it is not already) and waits until its node reports it gone,
 * which removes the row. A node that is down cannot: the row stays as a tombstone until the node returns and confirms.
 */
async function stopOne(host: ActionHost, i: Instance, log: (l: string) => void, reason?: string, signal?: AbortSignal, force = false): Promise<void> {
  const row = host.state.instances.get(i.id);
  if (!row) return;
  if (row.desired !== 'stopped') await host.saveInstance({ ...row, desired: 'stopped' });
  const nodeName = host.state.nodes.get(i.nodeId)?.name ?? i.nodeId;
  const nodeAway = () => host.state.nodes.get(i.nodeId)?.status !== 'ready';
  const tombstoned = () => log(`node ${nodeName} is down: ${i.service} ${i.id} stays listed as stopped until the node returns and confirms it gone`);
  // --force: no waiting for the node at all (it may be unreachable without being called down yet).
  if ((force || nodeAway()) && host.state.instances.has(i.id)) {
    tombstoned();
    return;
  }
  const timeoutMs = ((host.state.versions.get(i.versionId)?.manifest.services[i.service]?.stopTimeout ?? 10) + 30) * 1000;
  await waitForInstance(host.state, i.id, reportedRemoved, {
    timeoutMs,
    signal,
    onTimeout: () => {
      if (!nodeAway()) return new EnjinError('instance_not_reported', `node ${nodeName} did not report ${i.service} ${i.id} stopped within ${timeoutMs / 1000} s; the reconciler tries again`, { status: 504 });
      tombstoned();
      return 'done';
    },
  });
  log(`stopped ${i.service} ${i.id}${reason ? ` (${reason})` : ''}`);
}
