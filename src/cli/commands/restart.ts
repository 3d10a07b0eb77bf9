// `enjin restart [SERVICE…]`: restart a project's instances one at a time, each replaced by a ready copy before it
// stops, so a service keeps answering throughout.
import type { Command } from 'commander';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerRestart(program: Command): void {
  program
    .command('restart [services...]')
    .description('restart instances one at a time (each replaced by a ready copy first): all services, or the ones named')
    .option('-p, --project <name>', 'project')
    .action(async (services: string[], o: { project?: string }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const res = await c.restart(project, services);
      if (!res.job) return print({ project: res.project, job: null }, () => `${project} runs no instance${services.length ? ` of ${services.join(', ')}` : ''}; nothing to restart`);
      const tree = await followJob(c, res.job.id);
      const after = await c.project(project);
      print({ project: after.project, job: tree }, () => {
        if (tree.state !== 'succeeded') return `restart of ${project} ${tree.state}: ${tree.error ?? ''}`;
        return after.project.services.map((s) => `${s.name}: ${s.running}/${s.desired} running`).join('\n');
      });
    });
}
