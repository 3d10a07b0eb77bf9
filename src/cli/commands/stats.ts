// `enjin stats`: request statistics per service from every router.
import type { Command } from 'commander';
import { table } from '../format.ts';
import { client, print } from '../program.ts';

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('request statistics per service, from every router')
    .action(async () => {
      const { routers } = await client().stats();
      print({ routers }, () => {
        const rows = [['ROUTER', 'SERVICE', 'REQUESTS', '2XX', '4XX', '5XX', 'P50', 'P99', 'IN', 'OUT']];
        for (const r of routers as Array<{ routerId: string; services?: Record<string, { requests: number; bytesIn: number; bytesOut: number; status: Record<string, number>; latency: { p50: number; p99: number } }> }>) {
          for (const [k, s] of Object.entries(r.services ?? {})) rows.push([r.routerId, k, String(s.requests), String(s.status['2xx']), String(s.status['4xx']), String(s.status['5xx']), `${s.latency.p50}ms`, `${s.latency.p99}ms`, String(s.bytesIn), String(s.bytesOut)]);
        }
        return table(rows);
      });
    });
}
