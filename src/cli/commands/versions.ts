// `enjin versions`: a project's uploaded versions and which one is current.
import type { Command } from 'commander';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerVersions(program: Command): void {
  program
    .command('versions')
    .description("list a project's versions")
    .option('-p, --project <name>', 'project')
    .action(async (o: { project?: string }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const { versions } = await c.versions(project);
      print({ versions }, () => table([
        ['VERSION', 'ID', 'SHA256', 'SIZE', 'SERVICES', 'CREATED', ''],
        ...versions.map((v) => [`v${v.number}`, v.id, v.sha256.slice(0, 12), `${(v.size / 1024).toFixed(1)}K`, Object.keys(v.services).join(','), ago(v.createdAt), v.current ? (v.routed ? 'current' : 'current (rolling out)') : v.routed ? 'routed' : '']),
      ]));
    });
}
