// A project's rollout: where it stands, and the operator's word to a paused one (promote) or any running one (abort).
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { RolloutView } from '../../../core/api.ts';
import type { Project } from '../../../core/model.ts';
import type { Controller } from '../../controller.ts';
import { callerOf } from '../inputs.ts';

const ProjectParams = Type.Object({ project: Type.String() });

export function viewRollout(c: Controller, p: Project): RolloutView | null {
  const r = p.rollout;
  if (!r) return null;
  const number = (id: string) => c.state.versions.get(id)?.number ?? null;
  return { from: number(r.fromVersionId), to: number(r.toVersionId), phase: r.phase, promoted: r.promoted, pauses: r.pauses, reason: r.reason, job: r.rootJobId };
}

export function rolloutRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/v1/projects/:project/rollout', { schema: { summary: "The project's rollout under way (null: none)", params: ProjectParams } }, async (req) => {
      const p = c.project(req.params.project);
      return { rollout: viewRollout(c, p) };
    });

    app.post('/v1/projects/:project/rollout/promote', {
      schema: { summary: 'Promote the canaries of a paused rollout (or try a batch that failed without auto_rollback again); 409 no_paused_rollout when none waits', params: ProjectParams },
    }, async (req) => {
      const p = c.project(req.params.project);
      const control = c.rollouts.promote(p, callerOf(req));
      return { rollout: viewRollout(c, c.state.projects.get(p.id) ?? p), job: await c.jobs.getJob(control.rootJobId) };
    });

    app.post('/v1/projects/:project/rollout/abort', {
      schema: { summary: 'Abort the rollout under way: its new instances stop and the previous version is put back; 409 no_paused_rollout when none runs', params: ProjectParams },
    }, async (req) => {
      const p = c.project(req.params.project);
      const control = c.rollouts.abort(p, callerOf(req));
      return { rollout: viewRollout(c, c.state.projects.get(p.id) ?? p), job: await c.jobs.getJob(control.rootJobId) };
    });
  };
}
