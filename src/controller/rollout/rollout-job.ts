// The rollout job: drives a health-gated rollout from the version running (from) to the new one (to). It loops: reads
// the project's instances, asks the planner (plan.ts) for the next step, acts through the same actions a deploy uses
// (rollout-acts.ts), and waits for nodes' reports, the clock, or the operator (promote/abort through the registry).
//
// A controller restart mid-rollout: nothing of this loop survives it. The engine ends the tree as interrupted at the
// next start; the deploy's routes never moved to the new version, so the project changes put the previous version
// back (as for any failed deploy) and the reconciler stops the new instances. The project's `rollout` record is never
// stored, so the restarted controller routes the previous version only. Deploying again starts a fresh rollout.
import { ROLLOUT_PAUSED, ROLLOUT_WAITING } from '../../core/api.ts';
import { EnjinError } from '../../core/errors.ts';
import type { Instance, Project, ProjectRollout, Version } from '../../core/model.ts';
import { updateOf } from '../../core/service-policies.ts';
import { logInstanceTail, type ActionHost } from '../jobs/actions.ts';
import type { JobAction, JobContext } from '../jobs/engine.ts';
import { componentLogger } from '../../log/logger.ts';
import { isUp, nextStep, type RolloutAction, type RolloutFailure, type RolloutInstance, type ServiceRollout } from './plan.ts';
import { RolloutActs } from './rollout-acts.ts';
import type { RolloutControl, RolloutRegistry } from './registry.ts';

const slog = componentLogger('rollout');

/** A wait re-plans at least this often even when nothing is reported (a missed event must not stall a rollout). */
const MAX_WAIT_MS = 5000;
/** failed steps of a rollback tried again before the rollback gives up (the reconciler converges after that) */
const ROLLBACK_ATTEMPTS = 3;

/**
 * The engine aborts every running job when the controller stops or steps down (JobEngine.stop). A rollback then would
 * be cut short by the process going away; the tree is recovered as interrupted instead (see the top of this file).
 */
function controllerStopping(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof Error && signal.reason.message === 'the controller is stopping';
}

export function rolloutActions(host: ActionHost, actions: Record<string, JobAction>, registry: RolloutRegistry, now: () => number = Date.now): Record<string, JobAction> {
  return { rollout: (ctx) => new RolloutRun(host, actions, registry, now, ctx).run() };
}

class RolloutRun implements RolloutControl {
  readonly projectId: string;
  readonly rootJobId: string;
  private readonly from: Version;
  private readonly to: Version;
  private readonly acts: RolloutActs;
  private mode: 'forward' | 'rollback' = 'forward';
  private phase: ProjectRollout['phase'] = 'rolling';
  private promoted = false;
  private pauses = 0;
  /** why the rollout is rolling back (the job then fails with it) */
  private failure: string | null = null;
  /** the operator asked for it and the loop has not taken it yet */
  private request: { kind: 'promote' | 'abort'; by: string } | null = null;
  private readonly upSince = new Map<string, number>();
  private readonly batchStartedAt = new Map<string, number>();
  private wake: (() => void) | null = null;
  private lastNotes = '';
  /** the signal acts get: the job's, until it is aborted; then a rollback that must run to its end regardless */
  private actSignal: AbortSignal;

  constructor(private readonly host: ActionHost, actions: Record<string, JobAction>, private readonly registry: RolloutRegistry, private readonly now: () => number, private readonly ctx: JobContext) {
    const p = ctx.job.params;
    this.projectId = p.projectId as string;
    this.rootJobId = ctx.root.id;
    const version = (id: unknown) => {
      const v = host.state.versions.get(id as string);
      if (!v) throw new EnjinError('not_found', `version ${String(id)} no longer exists`, { status: 404 });
      return v;
    };
    this.from = version(p.fromVersionId);
    this.to = version(p.toVersionId);
    this.acts = new RolloutActs({ host, actions, job: ctx.job, root: ctx.root, log: ctx.log });
    this.actSignal = ctx.signal;
  }

  waitingForOperator(): boolean {
    return this.phase === 'paused' || this.phase === 'failed';
  }

  promote(by: string): void {
    this.request = { kind: 'promote', by };
    this.wake?.();
  }

  abort(by: string): void {
    this.request = { kind: 'abort', by };
    this.wake?.();
  }

  private project(): Project {
    const p = this.host.state.projects.get(this.projectId);
    if (!p) throw new EnjinError('not_found', 'the project no longer exists', { status: 404 });
    return p;
  }

  async run(): Promise<void> {
    const { log, signal } = this.ctx;
    this.registry.add(this);
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      await this.setRecord('rolling', null);
      log(`rolling v${this.to.number} out over v${this.from.number}; old instances keep serving until new ones are healthy`);
      if (this.ctx.job.params.release && this.to.manifest.release) {
        const first = Object.keys(this.to.manifest.services)[0];
        await this.acts.release(this.project(), this.to, first, signal);
      }
      await this.loop();
    } catch (err) {
      // A failure before anything was rolled (the release command, a placement) still owes the rollback its turn.
      if (this.mode === 'forward' && !controllerStopping(signal) && !(err instanceof EnjinError && err.code === 'rollout_rolled_back')) {
        await this.rollBack(`${(err as Error).message}`);
        await this.loop();
      } else throw err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.registry.remove(this);
      const p = this.host.state.projects.get(this.projectId);
      if (p?.rollout) await this.host.saveProject({ ...p, rollout: null }).catch((err: unknown) => slog.error({ err, projectId: this.projectId }, 'clearing the rollout record failed'));
    }
  }

  private async loop(): Promise<void> {
    const { log, signal } = this.ctx;
    let rollbackErrors = 0;
    for (;;) {
      if (controllerStopping(signal)) throw signal.reason;
      if (signal.aborted && this.mode === 'forward') await this.rollBack(`aborted: ${(signal.reason as Error)?.message ?? 'by a user'}`);
      if (this.request?.kind === 'abort' && this.mode === 'forward') await this.rollBack(`aborted by ${this.request.by}`);
      if (this.request?.kind === 'promote' && this.waitingForOperator()) {
        log(`${this.phase === 'paused' ? 'promoted' : 'retrying the failed batch'} by ${this.request.by}`);
        if (this.phase === 'failed') await this.retryBatch();
        else this.promoted = true;
        await this.setRecord('rolling', null);
      }
      this.request = null;
      const step = nextStep({ now: this.now(), mode: this.mode, promoted: this.promoted, services: this.services() });
      const notes = Object.entries(step.notes).map(([s, n]) => `${s}: ${n}`).join('; ');
      if (notes !== this.lastNotes) log(notes);
      this.lastNotes = notes;
      if (step.kind === 'done') return this.finish();
      if (step.kind === 'failed') {
        await this.failed(step.failure!);
        continue;
      }
      if (step.kind === 'act') {
        try {
          await Promise.all(step.actions.map((a) => this.act(a)));
        } catch (err) {
          const why = (err as Error).message;
          if (this.mode === 'forward') {
            if (signal.aborted) continue;
            await this.rollBack(why);
          } else if (++rollbackErrors >= ROLLBACK_ATTEMPTS) {
            throw new EnjinError('rollout_rolled_back', `${this.failure ?? why}; the rollback did not complete either (${why}): the reconciler puts v${this.from.number} back`, { status: 422 });
          } else log(`a rollback step failed (${why}); trying again`);
        }
        continue;
      }
      if (step.kind === 'paused' && this.phase !== 'paused' && this.phase !== 'failed') {
        await this.setRecord('paused', 'canaries are up: waiting for promotion');
        const name = this.project().name;
        log(`${ROLLOUT_PAUSED} promote with \`enjin deploy --promote --project ${name}\` or abort with \`enjin deploy --abort --project ${name}\``);
        this.tell('rollout-paused', `${name} v${this.to.number}: canaries are up beside v${this.from.number}, waiting for \`enjin deploy --promote --project ${name}\` or \`--abort\``);
      }
      await this.waitForChange(step.kind === 'wait' ? step.wakeAt : null);
    }
  }

  /** Every service of either version, as the planner sees it now. */
  private services(): ServiceRollout[] {
    const project = this.project();
    const now = this.now();
    const instances = this.host.state.instancesOf(this.projectId).filter((i) => i.desired === 'running' && (i.versionId === this.from.id || i.versionId === this.to.id));
    const names = [...new Set([...Object.keys(this.from.manifest.services), ...Object.keys(this.to.manifest.services)])];
    return names.map((name) => {
      const toSpec = this.to.manifest.services[name];
      const fromSpec = this.from.manifest.services[name];
      const mine = instances.filter((i) => i.service === name).map((i) => this.view(i, now));
      return {
        service: name,
        update: updateOf(toSpec ?? fromSpec),
        wanted: toSpec ? project.scale[name] ?? toSpec.instances : 0,
        wantedFrom: fromSpec ? project.scale[name] ?? fromSpec.instances : 0,
        instances: mine,
        batchStartedAt: this.batchStartedAt.get(name) ?? null,
      };
    });
  }

  /** The planner's view of an instance; tracks since when it has been up without a break (min_healthy_time). */
  private view(i: Instance, now: number): RolloutInstance {
    const c = i.current;
    const health = c?.state === 'running' ? c.health ?? 'none' : c?.health ?? 'starting';
    const seen: RolloutInstance = { id: i.id, side: i.versionId === this.to.id ? 'to' : 'from', state: c?.state ?? null, health, upSince: null, createdAt: Date.parse(i.createdAt) };
    if (isUp(seen)) {
      if (!this.upSince.has(i.id)) this.upSince.set(i.id, now);
      seen.upSince = this.upSince.get(i.id)!;
    } else this.upSince.delete(i.id);
    return seen;
  }

  private async act(a: RolloutAction): Promise<void> {
    const { log } = this.ctx;
    if (a.kind === 'stop') {
      log(`stopping ${a.instanceIds.length} of ${a.service} (${a.reason}), drained first`);
      await this.acts.stop(a.instanceIds, a.reason, this.actSignal);
      return;
    }
    const version = a.side === 'to' ? this.to : this.from;
    log(`starting ${a.count} of ${a.service} v${version.number} (${a.reason})`);
    this.batchStartedAt.set(a.service, this.now());
    await this.acts.start(this.project(), version, a.service, a.count, this.actSignal);
  }

  /** A batch failed its health gate: roll back (auto_rollback) or wait for the operator. */
  private async failed(f: RolloutFailure): Promise<void> {
    const { log } = this.ctx;
    const failing = this.host.state.instances.get(f.instanceId ?? '');
    const probe = failing?.current?.probe;
    const detail = probe && !probe.ok ? `; its last probe: ${probe.output}` : failing?.current?.message ? `; ${failing.current.message}` : '';
    const why = `${f.reason}${detail}`;
    if (failing) await logInstanceTail(this.host.bus, failing, log);
    const spec = this.to.manifest.services[f.service];
    if (!spec || updateOf(spec).autoRollback || this.mode === 'rollback') {
      await this.rollBack(why);
      return;
    }
    if (this.phase !== 'failed') {
      await this.setRecord('failed', why);
      const name = this.project().name;
      log(`failed without auto_rollback: ${why}`);
      log(`${ROLLOUT_WAITING} try the batch again with \`enjin deploy --promote --project ${name}\`, or put v${this.from.number} back with \`enjin deploy --abort --project ${name}\``);
    }
    await this.waitForChange(null);
  }

  /**
   * The operator's second chance for a batch that failed without auto_rollback: its new instances that are not up
   * are replaced, and the healthy deadline counts from now.
   */
  private async retryBatch(): Promise<void> {
    const now = this.now();
    const notUp = this.services().flatMap((s) => s.instances.filter((i) => i.side === 'to' && !isUp(i)).map((i) => i.id));
    if (notUp.length) await this.acts.stop(notUp, 'replaced for a retry of the batch', this.actSignal);
    for (const s of this.services()) this.batchStartedAt.set(s.service, now);
  }

  /** From now on the planner brings the previous version back and removes the new one; the job then fails with `why`. */
  private async rollBack(why: string): Promise<void> {
    if (this.mode === 'rollback') return;
    this.mode = 'rollback';
    this.failure = why;
    // A rollback runs to its end even when the job was aborted: that is what leaves nothing half-done.
    this.actSignal = new AbortController().signal;
    const t = this.now();
    for (const name of new Set([...Object.keys(this.from.manifest.services), ...Object.keys(this.to.manifest.services)])) this.batchStartedAt.set(name, t);
    this.ctx.log(`rolling back to v${this.from.number}: ${why}`);
    await this.setRecord('rolling-back', why);
    // Desired goes back first: whatever happens to this job now, the reconciler aims at the previous version.
    await this.host.saveProject({ ...this.project(), currentVersionId: this.from.id });
  }

  /** An event for `enjin events`, naming the service when the rollout is about one. */
  private tell(kind: 'rollout-paused' | 'rollout-rolled-back', message: string): void {
    const rolled = Object.keys(this.to.manifest.services);
    this.host.notify?.({ kind, at: new Date(this.now()).toISOString(), project: this.project().name, ...(rolled.length === 1 ? { service: rolled[0] } : {}), message });
  }

  private async finish(): Promise<void> {
    const { log } = this.ctx;
    const project = this.project();
    if (this.mode === 'rollback') {
      await this.host.saveProject({ ...project, rollout: null, routedVersionId: this.from.id, currentVersionId: this.from.id });
      log(`v${this.from.number} is back; v${this.to.number} is gone`);
      this.tell('rollout-rolled-back', `${project.name} v${this.to.number} was rolled back to v${this.from.number}: ${this.failure}`);
      throw new EnjinError('rollout_rolled_back', `rolled back to v${this.from.number}: ${this.failure}`, { status: 422 });
    }
    await this.host.saveProject({ ...project, rollout: null, routedVersionId: this.to.id });
    const seq = this.host.routes.refreshNow();
    // Done is done: an abort arriving now does not undo a finished rollout, so this wait does not take the signal.
    await this.host.routes.waitForRouters({ seq, timeoutMs: 5000, log });
    log(`v${this.to.number} carries all the traffic of ${project.name}`);
  }

  private async setRecord(phase: ProjectRollout['phase'], reason: string | null): Promise<void> {
    if ((phase === 'paused' || phase === 'failed') && phase !== this.phase) this.pauses++;
    this.phase = phase;
    const record: ProjectRollout = { fromVersionId: this.from.id, toVersionId: this.to.id, jobId: this.ctx.job.id, rootJobId: this.rootJobId, phase, promoted: this.promoted, pauses: this.pauses, reason };
    await this.host.saveProject({ ...this.project(), rollout: record });
  }

  /** Until an instance of the project changes, the clock reaches `wakeAt`, the operator asks, or the job is aborted. */
  private waitForChange(wakeAt: number | null): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsubscribe();
        this.wake = null;
        resolve();
      };
      const ms = Math.max(0, Math.min(MAX_WAIT_MS, wakeAt === null ? MAX_WAIT_MS : wakeAt - this.now()));
      const timer = setTimeout(done, ms);
      const unsubscribe = this.host.state.onInstanceChange((_id, row, previous) => {
        if ((row ?? previous)?.projectId === this.projectId) done();
      });
      this.wake = done;
      if (this.request || (this.ctx.signal.aborted && this.mode === 'forward')) done();
    });
  }
}
