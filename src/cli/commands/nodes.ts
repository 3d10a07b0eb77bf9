// `enjin nodes`: the machines, their status and free disk.
import type { Command } from 'commander';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';

export function registerNodes(program: Command): void {
  program
    .command('nodes')
    .description('list nodes')
    .action(async () => {
      const { nodes } = await client().nodes();
      const free = (d?: { freeBytes: number; low: boolean } | null): string => (d ? `${(d.freeBytes / 2 ** 30).toFixed(1)} GiB${d.low ? ' (LOW)' : ''}` : '-');
      print({ nodes }, () => table([['NODE', 'ID', 'STATUS', 'ADDRESS', 'INSTANCES', 'DISK FREE', 'SEEN'], ...(nodes as Array<Record<string, never>>).map((n) => [n.name, n.id, n.status, n.address, String(n.instances), free(n.disk), ago(n.lastSeenAt)])]));
    });
}
