// `enjin scale`: change how many instances services run.
import type { Command } from 'commander';
import { EnjinError } from '../../core/errors.ts';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';
import { sayQueued } from '../queue-note.ts';

export function registerScale(program: Command): void {
  program
    .command('scale <changes...>')
    .description('set instance counts: web=3, worker=+1, web=-1')
    .option('-p, --project <name>', 'project')
    .action(async (changes: string[], o: { project?: string }) => {
      const services: Record<string, string> = {};
      for (const ch of changes) {
        const m = /^([a-z][a-z0-9-]*)=([+-]?\d+)$/.exec(ch);
        if (!m) throw new EnjinError('invalid_request', `"${ch}" is not SERVICE=N, SERVICE=+N or SERVICE=-N`);
        services[m[1]] = m[2];
      }
      const c = client();
      const project = await projectName(o.project, c);
      const res = await c.scale(project, services);
      if (!res.job) return print({ project: res.project, job: null }, () => `${project} already runs that many; nothing to do`);
      sayQueued(res.job, true);
      const tree = await followJob(c, res.job.id);
      const after = await c.project(project);
      print({ project: after.project, job: tree }, () => after.project.services.map((s) => `${s.name}: ${s.running}/${s.desired} running`).join('\n'));
    });
}
