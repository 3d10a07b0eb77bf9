// GET /v1/events: what happened beside state (instance exits and failures, nodes down and back), oldest first; pass
// the returned `next` back as `after` to follow.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Controller } from '../../controller.ts';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

export function eventRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/v1/events', {
      schema: {
        summary: `Events, oldest first: the newest \`limit\` (default ${DEFAULT_LIMIT}), or those after \`after\` (the \`next\` of the last answer) to follow; kept for the controller's retention`,
        querystring: Type.Object({
          project: Type.Optional(Type.String()),
          service: Type.Optional(Type.String()),
          after: Type.Optional(Type.Integer({ minimum: 0 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT })),
        }),
      },
    }, async (req) => {
      const q = req.query;
      // A project that is gone still has its events (until they expire): only a name that never existed is unknown.
      if (q.project !== undefined && !c.state.projectByName(c.defaultWorkspace().id, q.project)) {
        const any = await c.store.listEvents({ project: q.project, limit: 1 });
        if (!any.length) c.project(q.project);
      }
      const events = await c.store.listEvents({ project: q.project, service: q.service, afterSeq: q.after, limit: q.limit ?? DEFAULT_LIMIT });
      return { events, next: events.length ? events[events.length - 1].seq : (q.after ?? 0), retentionSeconds: Math.round(c.events.retentionMs / 1000) };
    });
  };
}
