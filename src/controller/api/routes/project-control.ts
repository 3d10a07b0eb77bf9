// The operator's hold on a project: stop and start its services (keeping them stopped in between), freeze and thaw
// its automatic tasks.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Controller } from '../../controller.ts';
import { callerOf } from '../inputs.ts';
import { viewProject, viewQueued } from '../views.ts';

export function projectControlRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const ProjectParams = Type.Object({ project: Type.String() });

    app.post('/v1/projects/:project/stop', {
      schema: {
        summary: "Stop the project's instances (all services, or one) and keep them stopped: desired scale 0, the previous one put aside for start. Ends the active start, scale, restart or rollout of them and drops their queued changes; force: do not wait for nodes",
        params: ProjectParams,
        body: Type.Optional(Type.Object({ service: Type.Optional(Type.String()), force: Type.Optional(Type.Boolean()) })),
      },
    }, async (req, reply) => {
      const p = c.project(req.params.project);
      const job = await c.changes.holds.stop(p, req.body?.service ?? null, req.body?.force === true);
      return reply.status(job ? 202 : 200).send({ project: viewProject(c, c.state.projects.get(p.id)!), job: viewQueued(c, job) });
    });

    app.post('/v1/projects/:project/start', {
      schema: {
        summary: 'Bring back the scale a stop put aside (all stopped services, or one)',
        params: ProjectParams,
        body: Type.Optional(Type.Object({ service: Type.Optional(Type.String()) })),
      },
    }, async (req, reply) => {
      const p = c.project(req.params.project);
      const job = await c.changes.holds.start(p, req.body?.service ?? null, callerOf(req));
      return reply.status(job ? 202 : 200).send({ project: viewProject(c, c.state.projects.get(p.id)!), job: viewQueued(c, job) });
    });

    for (const [verb, frozen] of [['freeze', true], ['thaw', false]] as const) {
      app.post(`/v1/projects/:project/${verb}`, {
        schema: {
          summary: frozen
            ? 'Freeze the project: no automatic tasks (replacements of failed or lost instances, convergence) until thawed; requests still run'
            : 'Thaw the project: automatic tasks resume',
          params: ProjectParams,
        },
      }, async (req) => {
        const p = await c.changes.holds.setFrozen(c.project((req.params as { project: string }).project), frozen);
        return { project: viewProject(c, p) };
      });
    }
  };
}
