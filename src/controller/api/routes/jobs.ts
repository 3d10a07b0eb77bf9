// GET /v1/jobs: job trees (or, filtered by node or service, the jobs below them), newest first, a page at a time from
// the controller's in-memory job index; `next` is the `before` of the following page. Queued roots carry `queue`
// (their position and the tree they wait for).
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Job } from '../../../core/model.ts';
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT } from '../../jobs/job-index.ts';
import type { Controller } from '../../controller.ts';
import { viewQueued } from '../views.ts';

export function jobListRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/v1/jobs', {
      schema: {
        summary: 'List job trees, newest first, a page at a time: pass the answer\'s `next` as `before` for the next page',
        querystring: Type.Object({
          project: Type.Optional(Type.String()),
          service: Type.Optional(Type.String()),
          version: Type.Optional(Type.String({ description: 'v3' })),
          node: Type.Optional(Type.String()),
          state: Type.Optional(Type.String({ description: 'comma-separated: queued,waiting,running,succeeded,failed,aborted' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIST_LIMIT, default: DEFAULT_LIST_LIMIT })),
          before: Type.Optional(Type.String({ description: 'the `next` of the previous page' })),
        }),
      },
    }, async (req) => {
      const q = req.query;
      const states = q.state?.split(',').filter(Boolean) as Job['state'][] | undefined;
      // Filters by a node or a service match the jobs that carry that tag, which sit below the roots.
      const rootsOnly = !q.node && !q.service;
      const page = await c.jobIndex.list({
        rootsOnly,
        states,
        limit: q.limit ?? DEFAULT_LIST_LIMIT,
        before: q.before,
        tags: { project: q.project, service: q.service, version: q.version, node: q.node },
      });
      // Queued roots say where they stand in their project's queue.
      return { ...page, jobs: page.jobs.map((j) => viewQueued(c, j)) };
    });
  };
}
