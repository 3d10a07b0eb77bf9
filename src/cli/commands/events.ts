// `enjin events`: what happened beside state (instance exits and failures, nodes down and back), oldest first;
// -f keeps printing new ones as they happen.
import { Option, type Command } from 'commander';
import type { StoredEventView } from '../../client/client.ts';
import { toCount } from '../arguments.ts';
import { client, globals, print } from '../program.ts';

/** `2026-11-23T16:02:23.123Z instance-exited hello/web  instance inst_… exited with code 1; restarting it` */
function formatEvent(e: StoredEventView): string {
  const what = e.project ? `${e.project}${e.service ? `/${e.service}` : ''}` : e.nodeId ? `node ${e.nodeId}` : '';
  return `${e.at} ${e.kind.padEnd(16)} ${what.padEnd(20)} ${e.message}`;
}

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('what happened (instances that exited or failed, nodes down and back), oldest first; -f follows')
    .option('-p, --project <name>', 'only this project')
    .option('--service <name>', 'only this service')
    .option('-f, --follow', 'keep printing new events')
    .addOption(new Option('-n, --limit <n>', 'how many to start with (at most 1000)').default(50).argParser(toCount))
    .action(async (o: { project?: string; service?: string; follow?: boolean; limit: number }) => {
      const c = client();
      const json = !!globals().json;
      let res = await c.events({ project: o.project, service: o.service, limit: o.limit });
      if (!o.follow) {
        print({ events: res.events, next: res.next }, () => (res.events.length ? res.events.map(formatEvent).join('\n') : `no events${o.project ? ` for ${o.project}` : ''} (kept ${Math.round(res.retentionSeconds / 86400)} days)`));
        return;
      }
      // Following: one line per event (one JSON object per line with --json), as they come.
      const emit = (events: StoredEventView[]) => {
        for (const e of events) process.stdout.write(`${json ? JSON.stringify(e) : formatEvent(e)}\n`);
      };
      emit(res.events);
      let after = res.next;
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        res = await c.events({ project: o.project, service: o.service, after, limit: 1000 });
        emit(res.events);
        after = res.next;
      }
    });
}
