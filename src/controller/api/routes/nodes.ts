// Nodes: list and show them, drain one (its instances move elsewhere, nothing new goes there), activate it again, and
// remove one that is gone. `:node` is a node's id or its name.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Controller } from '../../controller.ts';
import type { NodeChange } from '../../nodes.ts';
import { viewNode, viewUnmanaged } from '../views.ts';

const NodeParams = Type.Object({ node: Type.String({ description: "the node's id or name" }) });

export function nodeRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const changed = (change: NodeChange) => ({ node: viewNode(c, change.node), jobs: change.jobs, waiting: change.waiting });

    app.get('/v1/nodes', { schema: { summary: 'List nodes: state (ready, down, draining), labels, capacity, disk, instances placed there, unmanaged ones' } }, async () => ({
      nodes: [...c.state.nodes.values()].sort((a, b) => a.name.localeCompare(b.name) || (a.id < b.id ? -1 : 1)).map((n) => viewNode(c, n)),
    }));

    app.get('/v1/nodes/:node', { schema: { summary: 'Show a node, with the instances it runs that the controller does not manage', params: NodeParams } }, async (req) => {
      const node = c.nodeLifecycle.find(req.params.node);
      const unmanaged = [...c.state.unmanaged].filter(([, u]) => u.nodeId === node.id).map(([id, u]) => viewUnmanaged(id, u));
      return { node: viewNode(c, node), unmanaged };
    });

    app.post('/v1/nodes/:node/drain', {
      schema: { summary: 'Drain a node: nothing new is placed there and its instances move to other nodes (the new ones ready before the old stop)', params: NodeParams },
    }, async (req, reply) => {
      const change = await c.drainNode(req.params.node);
      return reply.status(change.jobs.length ? 202 : 200).send(changed(change));
    });

    app.post('/v1/nodes/:node/activate', { schema: { summary: 'Undo a drain: the node takes new instances again', params: NodeParams } }, async (req) => changed(await c.activateNode(req.params.node)));

    app.delete('/v1/nodes/:node', {
      schema: {
        summary: 'Forget a node that is down, with its instance rows and unmanaged ones; a ready node needs force=true',
        params: NodeParams,
        querystring: Type.Object({ force: Type.Optional(Type.Boolean({ default: false })) }),
      },
    }, async (req, reply) => {
      const change = await c.removeNode(req.params.node, req.query.force === true);
      return reply.status(change.jobs.length ? 202 : 200).send(changed(change));
    });
  };
}
