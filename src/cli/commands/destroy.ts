// `enjin destroy`: stop a project's instances and remove it.
import type { Command } from 'commander';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';

export function registerDestroy(program: Command): void {
  program
    .command('destroy <project>')
    .description('stop every instance of PROJECT and remove it with its routes and versions')
    .action(async (project: string) => {
      const c = client();
      const { job } = await c.destroy(project);
      const tree = await followJob(c, job.id);
      print({ job: tree }, () => tree.state === 'succeeded' ? `${project} destroyed` : `destroy ${tree.state}`);
    });
}
