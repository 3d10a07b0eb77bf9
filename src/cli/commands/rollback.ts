// `enjin rollback`: a new release with an earlier release's build and config; nothing is built.
import type { Command } from 'commander';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerRollback(program: Command): void {
  program
    .command('rollback [version]')
    .description("go back to an earlier release's build and config (default: the release before the current one), as a new release")
    .option('-p, --project <name>', 'project')
    .action(async (version: string | undefined, o: { project?: string }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const res = await c.rollback(project, version);
      const release = res.release!;
      if (!res.job) return print({ version: res.version, release, job: null }, () => `${project} v${release.number}: ${release.description}`);
      const tree = await followJob(c, res.job.id);
      print({ version: res.version, release, job: tree }, () => (tree.state === 'succeeded' ? `${project} v${release.number} is live (${release.description})` : `rollback ${tree.state}`));
    });
}
