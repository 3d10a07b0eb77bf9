// `enjin stop` / `start` / `freeze` / `thaw` as changes of the project: what they decide and the trees they start.
import type { Job, Project } from '../core/model.ts';
import { buildTree, type ActionHost } from './jobs/actions.ts';
import type { ChangeRunner } from './change-runner.ts';
import type { ForcedLeftovers } from './forced-leftovers.ts';
import { servicesOf, startedProject, stopPlan, stoppedProject } from './project-holds.ts';
import type { ControllerState } from './state.ts';

/** The steps of the applier (ProjectChanges) a hold is made of. */
export interface HoldSteps {
  readonly runner: ChangeRunner;
  readonly state: ControllerState;
  readonly actions: ActionHost;
  readonly leftovers: ForcedLeftovers;
  /** the project as it is now; not found once destroyed */
  current(projectId: string): Project;
  /** stores the project's new desired state (its failures forgotten: this is a new request) */
  save(p: Project): Promise<void>;
  /** plans the project as given (refused whole when it cannot be placed), stores it and starts its tree */
  planAndStart(p: Project, kind: 'start-services', title: string, params: Record<string, unknown>): Promise<Job | null>;
}

export class ProjectHolds {
  constructor(private readonly s: HoldSteps) {}

  /**
   * `enjin stop`: the services (all when `service` is null) scaled to 0, their scale put aside for `start`, their
   * instances stopped. It ends the project's active changes about them and drops their queued ones. `force`: the tree
   * does not wait for nodes (an unreachable one stops them when it returns).
   */
  async stop(project: Project, service: string | null, force: boolean): Promise<Job | null> {
    return this.s.runner.serialized(() => {
      const version = project.currentVersionId ? this.s.state.versions.get(project.currentVersionId) : undefined;
      const services = servicesOf(project, version, service);
      const title = `stop ${project.name}${service ? ` ${service}` : ''}${force ? ' (forced)' : ''}`;
      return this.s.runner.submit(project, {
        category: 'stop', services: service ? [service] : null, kind: 'stop-services', title, force,
        run: async () => {
          const next = stoppedProject(this.s.current(project.id), version!, services);
          await this.s.save(next);
          const plan = stopPlan(next, this.s.state.instancesOf(project.id), services, force);
          if (!plan.stops.length) return null;
          if (force) this.s.leftovers.remember(this.s.actions, plan.stops.map((s) => this.s.state.instances.get(s.instanceId)).filter((i) => i !== undefined));
          return this.s.runner.startTree(next, buildTree(this.s.actions, next, plan, 'stop-services', title, { force }));
        },
      });
    });
  }

  /** `enjin start`: the scale `stop` put aside comes back for the services (all stopped ones when `service` is null). */
  async start(project: Project, service: string | null, by: string): Promise<Job | null> {
    return this.s.runner.serialized(() => {
      const version = project.currentVersionId ? this.s.state.versions.get(project.currentVersionId) : undefined;
      const services = service ? servicesOf(project, version, service) : Object.keys(project.stoppedScale ?? {});
      // Refused now (not when its turn comes) when there is nothing to bring back.
      startedProject(project, services.length ? services : servicesOf(project, version, null));
      const title = `start ${project.name}${service ? ` ${service}` : ''}`;
      return this.s.runner.submit(project, {
        category: 'start', services: service ? [service] : null, kind: 'start-services', title,
        run: async () => {
          const now = this.s.current(project.id);
          const next = startedProject(now, service ? services : Object.keys(now.stoppedScale ?? {}));
          return this.s.planAndStart(next, 'start-services', title, { by });
        },
      });
    });
  }

  /** `enjin freeze` / `thaw`: a frozen project gets no automatic tasks; what an operator asks for still runs. */
  async setFrozen(project: Project, frozen: boolean): Promise<Project> {
    return this.s.runner.serialized(async () => {
      const now = this.s.current(project.id);
      const next: Project = { ...now, frozen };
      if (!frozen) delete next.frozen;
      await this.s.save(next);
      // Thawed: what waited for it (a failed instance's replacement) is the reconcile loop's at its next tick.
      return this.s.current(project.id);
    });
  }
}
