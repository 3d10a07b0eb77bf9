// Refuses writes the controller cannot take now, before a route runs or a body is read: a follower sends every write
// to the leader (503 not_leader, naming it), and a leader with its store away refuses desired-state changes (503
// store_unavailable) so nothing is half-applied, and so does a controller still rebuilding its store from the nodes (503
// recovering).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EnjinError } from '../../core/errors.ts';
import type { Controller } from '../controller.ts';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** a node joins through whichever controller it reaches (the join route decides for itself) */
const ANY_CONTROLLER = /^\/v1\/join(\/|$)/;
/** aborting a tree changes no desired state: the engine writes job rows behind, so it works while the store is away */
const NOT_DESIRED_STATE = /^\/v1\/jobs\/[^/]+\/abort$/;

export function notLeaderBody(c: Controller): { error: ReturnType<EnjinError['toJSON']>; leader: { id: string; apiUrl: string } | null } {
  const leader = c.leadership.leader();
  const where = leader ? `the leader is ${leader.id} at ${leader.apiUrl || '(its API address is not known yet)'}: send writes there` : 'no leader is known right now (one takes over within seconds): retry shortly';
  const error = new EnjinError('not_leader', `this controller (${c.leadership.id}) is not the leader; ${where}`, { status: 503 });
  return { error: error.toJSON(), leader };
}

/** Adds the hook to the root app; register it after authentication so strangers learn nothing about the cluster. */
export function guardWrites(app: FastifyInstance, c: Controller): void {
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (READS.has(req.method)) return;
    const path = req.url.split('?')[0];
    if (ANY_CONTROLLER.test(path)) return;
    if (!c.leadership.leading) {
      // A refused upload may still be arriving: answer and close rather than read it.
      reply.header('connection', 'close');
      return reply.status(503).send(notLeaderBody(c));
    }
    if (NOT_DESIRED_STATE.test(path)) return;
    if (c.recovery?.blocksWrites()) {
      reply.header('connection', 'close');
      throw new EnjinError('recovering', 'this controller is rebuilding its store from the nodes (--recover-from-nodes); writes are taken once the first rebuild is written, within seconds of the last node answering: watch `enjin cluster` and retry', { status: 503 });
    }
    await c.store.assertWritable();
  });
}
