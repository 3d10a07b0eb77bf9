// `enjin nodes`: the machines of the cluster and their state; `nodes token` to let one join, `nodes drain|activate|
// remove` to take one out of service and back.
import type { Command } from 'commander';
import type { NodeListEntry } from '../../client/client.ts';
import { EnjinError } from '../../core/errors.ts';
import { parseDuration } from '../roles/durations.ts';
import { ago, table } from '../format.ts';
import { client, globals, print } from '../program.ts';

/** ready | down | draining: what the API says, or derived from status and draining by an older controller. */
export function nodeState(n: NodeListEntry): string {
  if (n.state) return n.state;
  if (n.status && n.status !== 'ready') return n.status;
  return n.draining ? 'draining' : 'ready';
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)}G`;

function capacityText(n: NodeListEntry): string {
  const c = n.capacity;
  if (!c) return '-';
  return `${c.cpus} cpu, ${gib(c.memoryBytes)} mem, ${c.ports} ports`;
}

function labelsText(labels: Record<string, string>): string {
  const text = Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
  return text || '-';
}

export function registerNodes(program: Command): void {
  const nodes = program.command('nodes').description('list nodes; `nodes token` lets a host join, `nodes drain|activate|remove NODE`');

  nodes.command('list', { isDefault: true })
    .description('list nodes: state, roles, labels, compartment, capacity, instances, last seen')
    .action(async () => {
      const { nodes: list } = await client().nodes();
      const view = list.map((n) => ({ ...n, state: nodeState(n) }));
      print({ nodes: view }, () => (view.length ? table([
        ['NAME', 'ID', 'STATE', 'ROLES', 'ADDRESS', 'LABELS', 'COMPARTMENT', 'CAPACITY', 'INSTANCES', 'DISK FREE', 'LAST SEEN'],
        ...view.map((n) => [
          n.name, n.id, n.state, (n.roles ?? ['agent']).join(','), n.address, labelsText(n.labels), n.compartment ?? '-', capacityText(n),
          String(n.instances), n.disk ? `${gib(n.disk.freeBytes)}${n.disk.low ? ' (LOW)' : ''}` : '-', n.lastSeenAt ? ago(n.lastSeenAt) : 'never',
        ]),
      ]) : 'no nodes yet: make a join token with `enjin nodes token` and start `enjin agent --join API --token T` on a host'));
    });

  nodes.command('token')
    .description('make a join token for `enjin agent|router --join API --token T` (single-use unless --reusable)')
    .option('--ttl <duration>', 'how long it stays valid, e.g. 30m, 1h, 7d (at most 30d)', '1h')
    .option('--reusable', 'admit any number of hosts until it expires (for provisioning many at once)')
    .action(async (o: { ttl: string; reusable?: boolean }) => {
      const ttlMs = parseDuration('--ttl', o.ttl);
      if (ttlMs < 1000) throw new EnjinError('invalid_request', `--ttl must be at least 1s (got ${o.ttl})`);
      const c = client();
      const t = await c.createJoinToken({ ttlSeconds: Math.round(ttlMs / 1000), reusable: !!o.reusable });
      print(t, () => [
        t.token,
        `  ${t.reusable ? 'reusable' : 'single-use'}, valid until ${t.expiresAt}`,
        `  on a host: enjin agent --join ${c.creds.api} --token ${t.token} --data DIR`,
      ].join('\n'));
    });

  nodes.command('drain <node>')
    .description('move the instances of NODE to other nodes (new ones ready before old ones stop) and place nothing new there')
    .action(async (node: string) => {
      if (!globals().json) process.stderr.write(`draining ${node}…\n`);
      const answer = await client().drainNode(node);
      const jobs = answer.jobs ?? [];
      print(answer, () => `${node} is draining: nothing new goes there${jobs.length ? `; moving its instances (${jobs.map((j) => `job ${j.id}`).join(', ')}; follow with \`enjin jobs show -f ID\`)` : ''}`);
    });

  nodes.command('activate <node>')
    .description('undo a drain: NODE takes new instances again')
    .action(async (node: string) => {
      const answer = await client().activateNode(node);
      print(answer, () => `${node} is active again`);
    });

  nodes.command('remove <node>')
    .description('forget a down node (a ready one only with --force)')
    .option('--force', 'remove it even though it is not down')
    .action(async (node: string, o: { force?: boolean }) => {
      const answer = await client().removeNode(node, !!o.force);
      print(answer, () => `${node} removed${answer.jobs?.length ? ` (replacing its instances: ${answer.jobs.map((j) => j.id).join(', ')})` : ''}`);
    });
}
