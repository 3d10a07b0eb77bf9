// The rollouts under way, by project: how `deploy --promote` and `--abort` (the API) reach the running rollout job,
// which waits in memory for them. A controller restart ends the jobs, and with them their entries.
import { conflict } from '../../core/errors.ts';
import type { Project } from '../../core/model.ts';

/** What the API may ask of a running rollout job. */
export interface RolloutControl {
  readonly projectId: string;
  readonly rootJobId: string;
  /** waiting for the operator: canaries up (paused), or a batch failed without auto_rollback (failed) */
  waitingForOperator(): boolean;
  promote(by: string): void;
  abort(by: string): void;
}

export class RolloutRegistry {
  private readonly byProject = new Map<string, RolloutControl>();

  add(control: RolloutControl): void {
    this.byProject.set(control.projectId, control);
  }

  remove(control: RolloutControl): void {
    if (this.byProject.get(control.projectId) === control) this.byProject.delete(control.projectId);
  }

  get(projectId: string): RolloutControl | null {
    return this.byProject.get(projectId) ?? null;
  }

  /** Lets a paused rollout go on; 409 no_paused_rollout when the project's rollout is not waiting for it. */
  promote(project: Project, by: string): RolloutControl {
    const control = this.byProject.get(project.id);
    if (!control || !control.waitingForOperator()) {
      const doing = control ? `its rollout (job ${control.rootJobId}) is not waiting for promotion; follow it with \`enjin jobs show ${control.rootJobId} -f\`` : 'it has no rollout under way';
      throw conflict('no_paused_rollout', `nothing to promote in ${project.name}: ${doing}`);
    }
    control.promote(by);
    return control;
  }

  /** Ends the project's rollout, putting the previous version back; 409 no_paused_rollout when none runs. */
  abort(project: Project, by: string): RolloutControl {
    const control = this.byProject.get(project.id);
    if (!control) throw conflict('no_paused_rollout', `nothing to abort in ${project.name}: it has no rollout under way (a deploy without \`update:\` is aborted with \`enjin jobs abort ID\`)`);
    control.abort(by);
    return control;
  }
}
