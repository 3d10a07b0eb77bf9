// `enjin volumes`: the data directories nodes hold for projects, with the services using them, their node and size.
import type { Command } from 'commander';
import { table } from '../format.ts';
import { client, print } from '../program.ts';

/** 0 B, 12.3 KiB, 4.0 MiB… */
export function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function registerVolumes(program: Command): void {
  program
    .command('volumes')
    .description("list volumes: projects' data directories on the nodes, that outlive versions (sizes measured now)")
    .option('-p, --project <project>', 'only this project')
    .action(async (o: { project?: string }) => {
      const { volumes } = await client().volumes(o.project);
      print({ volumes }, () => {
        if (!volumes.length) return o.project ? `${o.project} has no volumes` : 'no volumes';
        return table([
          ['PROJECT', 'SERVICES', 'NAME', 'PATH', 'NODE', 'SIZE', 'DIRECTORY'],
          ...volumes.map((v) => [
            v.project,
            v.services.join(',') || '(none)',
            v.name,
            v.path ?? '-',
            v.node.state === 'ready' ? v.node.name : `${v.node.name} (${v.node.state})`,
            v.sizeBytes === null ? '?' : bytesText(v.sizeBytes),
            v.dir,
          ]),
        ]);
      });
    });
}
