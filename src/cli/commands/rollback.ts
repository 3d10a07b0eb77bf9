// `enjin rollback`: deploy an earlier version again.
import type { Command } from 'commander';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerRollback(program: Command): void {
  program
    .command('rollback [version]')
    .description('deploy an earlier version again (default: the one before the current one)')
    .option('-p, --project <name>', 'project')
    .action(async (version: string | undefined, o: { project?: string }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const res = await c.rollback(project, version);
      if (!res.job) return print({ version: res.version, job: null }, () => `${project} already runs v${res.version.number}`);
      const tree = await followJob(c, res.job.id);
      print({ version: res.version, job: tree }, () => tree.state === 'succeeded' ? `${project} is back on v${res.version.number}` : `rollback ${tree.state}`);
    });
}
