// `enjin releases`: what each release of a project was (a deploy with its commit, a config change, a rollback), who
// made it, when, and which build it runs.
import type { Command } from 'commander';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerReleases(program: Command): void {
  program
    .command('releases')
    .description("list a project's releases, newest first: what changed, who, when")
    .option('-p, --project <name>', 'project')
    .action(async (o: { project?: string }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const { releases, scales } = await c.releases(project);
      print({ releases, scales }, () => {
        if (!releases.length) return `${project} has no releases yet; deploy it with \`enjin deploy\``;
        // Scales make no release; they are shown in time order among them, without a number.
        const rows = [
          ...releases.map((r) => ({ at: r.createdAt, cells: [`v${r.number}`, r.description, r.build === null ? '?' : `v${r.build}`, r.by ?? '', ago(r.createdAt), r.current ? (r.routed ? 'current' : 'current (rolling out)') : r.routed ? 'routed' : ''] })),
          ...scales.map((s) => ({ at: s.createdAt, cells: ['-', s.description, '', s.by ?? '', ago(s.createdAt), ''] })),
        ].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0));
        return table([['RELEASE', 'CHANGE', 'BUILD', 'BY', 'WHEN', ''], ...rows.map((r) => r.cells)]);
      });
    });
}
