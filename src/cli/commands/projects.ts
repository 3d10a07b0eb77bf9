// `enjin projects`: the projects, their versions, services and their URLs.
import type { Command } from 'commander';
import { table } from '../format.ts';
import { client, print } from '../program.ts';

export function registerProjects(program: Command): void {
  program
    .command('projects')
    .description('list projects')
    .action(async () => {
      const { projects } = await client().projects();
      print({ projects }, () => projects.length ? table([
        ['PROJECT', 'VERSION', 'SERVICES', 'HELD', 'URLS'],
        ...projects.map((p) => [p.name, p.version ? `v${p.version}` : '-', p.services.map((s) => `${s.name} ${s.running}/${s.desired}${s.stopped ? ' stopped' : ''}`).join(', '), p.frozen ? 'frozen' : '-', p.services.flatMap((s) => s.urls ?? s.hostnames).join(' ')]),
      ]) : 'no projects; deploy one with `enjin deploy DIR`');
    });
}
