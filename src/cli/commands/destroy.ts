// `enjin destroy`: stop a project's instances and remove it; its volumes stay unless --volumes. On a terminal it asks
// for the project name again first.
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { EnjinError } from '../../core/errors.ts';
import { followJob } from '../follow-job.ts';
import { client, globals, print } from '../program.ts';
import { bytesText } from './volumes.ts';

export function registerDestroy(program: Command): void {
  program
    .command('destroy <project>')
    .description('stop every instance of PROJECT and remove it with its routes and versions; its volumes stay on their nodes unless --volumes (on a terminal, asks for the name again)')
    .option('-y, --yes', 'do not ask for the project name again')
    .option('--volumes', "remove the project's volumes (its data) too, also those a project already destroyed left")
    .option('--force', 'complete at once even with a node unreachable: it stops the instances when it returns')
    .action(async (project: string, o: { yes?: boolean; volumes?: boolean; force?: boolean }) => {
      // Only a person at a terminal is asked; scripts (no TTY, or --json) are taken at their word.
      if (!o.yes && !globals().json && process.stdin.isTTY && process.stderr.isTTY) await confirm(project, !!o.volumes);
      const c = client();
      const answer = await c.destroy(project, { volumes: o.volumes, force: o.force });
      const kept = answer.volumesKept ?? [];
      const removedNow = answer.volumesRemoved ?? [];
      if (!answer.job) {
        print({ job: null, volumesKept: [], volumesRemoved: removedNow }, () => `removed the volumes ${project} left: ${removedNow.map((v) => v.name).join(', ')}`);
        return;
      }
      const tree = await followJob(c, answer.job.id);
      print({ job: tree, volumesKept: kept, volumesRemoved: removedNow }, () => {
        if (tree.state !== 'succeeded') return `destroy ${tree.state}`;
        const lines = [`${project} destroyed${o.volumes ? ' with its volumes' : ''}`];
        if (kept.length) {
          lines.push(`kept its volume${kept.length > 1 ? 's' : ''} (a project named ${project} deployed again gets ${kept.length > 1 ? 'them' : 'it'} back):`);
          for (const v of kept) lines.push(`  ${v.name} on ${v.node}: ${v.dir}${v.sizeBytes !== null ? ` (${bytesText(v.sizeBytes)})` : ''}`);
          lines.push(`remove ${kept.length > 1 ? 'them' : 'it'} with \`enjin destroy ${project} --volumes\``);
        }
        return lines.join('\n');
      });
    });
}

async function confirm(project: string, volumes: boolean): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const what = volumes
      ? `This stops every instance of ${project} and removes its routes, versions and VOLUMES: its data is deleted for good.`
      : `This stops every instance of ${project} and removes its routes and versions (its volumes are kept; --volumes removes them too).`;
    const answer = (await rl.question(`${what}\nType the project name to go on: `)).trim();
    if (answer !== project) throw new EnjinError('not_confirmed', `"${answer}" is not ${project}: nothing was destroyed (pass --yes to skip the question)`, { status: 400 });
  } finally {
    rl.close();
  }
}
