// `enjin cluster`: the controllers sharing the store, which one leads, whether the store answers, and how a recovery
// from the nodes is going.
import type { Command } from 'commander';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';

export function registerCluster(program: Command): void {
  program
    .command('cluster')
    .description('list the controllers and name the leader (writes go to it)')
    .action(async () => {
      const view = await client().cluster();
      print(view, () => {
        const rows = view.controllers.map((c) => [c.id, c.leader ? 'leader' : c.stale ? 'gone' : 'follower', c.apiUrl || '-', ago(c.lastSeenAt), c.id === view.self.id ? '(this one)' : '']);
        const store = view.store.available ? 'store: reachable' : `store: UNREACHABLE (${view.store.pendingWrites} rows waiting; desired-state changes are refused until it is back)`;
        const leader = view.leader ? `leader: ${view.leader.id} at ${view.leader.apiUrl}` : 'leader: none known right now';
        const lines = [leader, store];
        const r = view.recovery;
        if (r) {
          const phase = r.phase === 'census' ? 'taking the census of the nodes (writes wait)' : r.phase === 'rebuilt' ? `rebuilt; admitting late nodes until ${r.windowClosesAt}` : 'done (window closed)';
          lines.push(`recovery from the nodes: ${phase}; ${r.nodes} node(s), ${r.projects} project(s), ${r.versions} version(s), ${r.instances} instance(s)`);
          for (const v of r.versionsWithoutPackage) lines.push(`  no package kept for ${v}: redeploy it before it must move`);
          for (const p of r.problems) lines.push(`  problem: ${p}`);
        }
        return [...lines, '', table([['CONTROLLER', 'ROLE', 'API', 'SEEN', ''], ...rows])].join('\n');
      });
    });
}
