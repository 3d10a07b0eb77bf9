// GET /v1/cluster: this controller, the leader, and every controller that heartbeats on this store.
import type { FastifyInstance } from 'fastify';
import type { Controller } from '../../controller.ts';

export function clusterRoutes(c: Controller) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/v1/cluster', { schema: { summary: 'The controllers sharing this store and which one leads (followers answer reads; writes go to the leader)' } }, async () => {
      const leader = c.leadership.leader();
      return {
        self: { id: c.leadership.id, apiUrl: c.apiUrl, leader: c.leadership.leading },
        leader,
        store: { available: c.store.available, pendingWrites: c.store.pending },
        recovery: c.recovery?.status() ?? null,
        controllers: c.leadership.controllers().map((r) => ({ id: r.id, apiUrl: r.apiUrl, startedAt: r.startedAt, lastSeenAt: r.lastSeenAt, leader: r.leader, leaderSince: r.leaderSince, stale: r.stale })),
      };
    });
  };
}
