// Volumes: the data directories nodes hold for projects, with their sizes measured on asking (`enjin volumes`).
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Controller } from '../../controller.ts';
import { listVolumes } from '../../volumes.ts';

export function volumeRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    app.get('/v1/volumes', {
      schema: {
        summary: "List volumes: each project's data directories on the nodes, the services using them, their node and size (measured now on ready nodes)",
        querystring: Type.Object({ project: Type.Optional(Type.String({ description: 'only this project' })) }),
      },
    }, async (req) => ({ volumes: await listVolumes(c.state, c.bus, { project: req.query.project, measure: true }) }));
  };
}
