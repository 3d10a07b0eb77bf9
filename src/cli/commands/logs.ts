// `enjin logs`: a service's output, optionally followed. Each line shows when it was written and by which instance.
import { Option, type Command } from 'commander';
import { toCount } from '../arguments.ts';
import { client, globals } from '../program.ts';
import { projectName } from '../project-name.ts';

/** One line of an instance's log as shown: `time` is when the agent read it (null for lines logged before stamps). */
export interface LogLine {
  time: string | null;
  instance: string;
  service: string;
  line: string;
}

/** The stamp the agent puts before each line it writes (src/agent/log-stamp.ts). */
const STAMPED = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) /;

/**
 * Splits instances' log text into lines with their time and instance, in the order they were written: a batch covers
 * several instances, so their lines are merged by time (stable: one instance's lines keep their order; an unstamped
 * line goes with the line before it).
 */
export function logLines(entries: Array<{ instanceId: string; service: string; data: string }>): LogLine[] {
  const out: Array<LogLine & { sortKey: string }> = [];
  for (const e of entries) {
    if (!e.data) continue;
    const lines = e.data.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    let sortKey = '';
    for (const raw of lines) {
      const m = STAMPED.exec(raw);
      if (m) sortKey = m[1];
      out.push({ time: m ? m[1] : null, instance: e.instanceId, service: e.service, line: m ? raw.slice(m[0].length) : raw, sortKey });
    }
  }
  out.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  return out.map(({ sortKey: _, ...l }) => l);
}

/** `2026-11-23T16:02:23.123Z web.a1b2c3 | text`, the instance by the end of its id as in `ps`. */
export function formatLogLine(l: LogLine): string {
  return `${l.time ?? '-'.padEnd(24)} ${l.service}.${l.instance.slice(-6)} | ${l.line}`;
}

export function registerLogs(program: Command): void {
  program
    .command('logs <service>')
    .description("print a service's logs (SERVICE or PROJECT/SERVICE), each line with its time and instance; -f follows")
    .option('-p, --project <name>', 'project')
    .option('-f, --follow', 'keep printing new lines')
    .addOption(new Option('-n, --lines <n>', 'lines per instance to start with').default(100).argParser(toCount))
    .action(async (service: string, o: { project?: string; follow?: boolean; lines: number }) => {
      const c = client();
      let projectArg = o.project;
      if (service.includes('/')) [projectArg, service] = service.split('/', 2);
      const project = await projectName(projectArg, c);
      let cursor: string | undefined;
      const emit = (entries: Array<{ instanceId: string; service: string; data: string }>) => {
        for (const l of logLines(entries)) process.stdout.write(`${globals().json ? JSON.stringify(l) : formatLogLine(l)}\n`);
      };
      let res = await c.logs(project, { service, lines: o.lines });
      emit(res.entries);
      cursor = res.cursor;
      while (o.follow) {
        await new Promise((r) => setTimeout(r, 500));
        res = await c.logs(project, { service, cursor });
        emit(res.entries);
        cursor = res.cursor;
      }
    });
}
