// `enjin logs`: a service's output, optionally followed.
import { Option, type Command } from 'commander';
import { toCount } from '../arguments.ts';
import { client, globals } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerLogs(program: Command): void {
  program
    .command('logs <service>')
    .description("print a service's logs (SERVICE or PROJECT/SERVICE); -f follows")
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
        for (const e of entries) {
          if (!e.data) continue;
          if (globals().json) for (const line of e.data.split('\n').filter(Boolean)) process.stdout.write(`${JSON.stringify({ instance: e.instanceId, service: e.service, line })}\n`);
          else for (const line of e.data.split('\n').filter((l, k, a) => l || k < a.length - 1)) process.stdout.write(`${e.service}.${e.instanceId.slice(-6)} | ${line}\n`);
        }
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
