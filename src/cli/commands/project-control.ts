// `enjin stop`, `enjin start`, `enjin freeze`, `enjin thaw`: the operator's hold on a project.
import type { Command } from 'commander';
import type { QueuedJobView } from '../../core/api.ts';
import type { EnjinClient, ProjectView } from '../../client/client.ts';
import { followJob } from '../follow-job.ts';
import { client, print } from '../program.ts';
import { sayQueued } from '../queue-note.ts';

function servicesLine(p: ProjectView): string {
  return p.services.map((s) => `${s.name}: ${s.running}/${s.desired} running${s.stopped ? ' (stopped)' : ''}`).join('\n');
}

/** Follows the change's tree (queued ones from when they start) and prints the project as it is after. */
async function followChange(c: EnjinClient, project: string, job: QueuedJobView | null, nothing: string): Promise<void> {
  if (!job) {
    const { project: p } = await c.project(project);
    print({ project: p, job: null }, () => `${nothing}\n${servicesLine(p)}`);
    return;
  }
  sayQueued(job, true);
  const tree = await followJob(c, job.id);
  const { project: after } = await c.project(project);
  print({ project: after, job: tree }, () => (tree.state === 'succeeded' ? servicesLine(after) : `${tree.title} ${tree.state}`));
}

export function registerProjectControl(program: Command): void {
  program
    .command('stop <project>')
    .description("stop the project's instances (every service, or --service) and keep them stopped until `enjin start`; ends its running start, scale, restart or rollout")
    .option('--service <name>', 'only this service')
    .option('--force', 'complete at once even with a node unreachable: it stops the instances when it returns')
    .action(async (project: string, o: { service?: string; force?: boolean }) => {
      const c = client();
      const { job } = await c.stop(project, { service: o.service, force: o.force });
      await followChange(c, project, job, `${project}${o.service ? ` ${o.service}` : ''} has nothing running; it stays stopped until \`enjin start ${project}\``);
    });

  program
    .command('start <project>')
    .description('bring back the instances `enjin stop` stopped (every stopped service, or --service)')
    .option('--service <name>', 'only this service')
    .action(async (project: string, o: { service?: string }) => {
      const c = client();
      const { job } = await c.start(project, { service: o.service });
      await followChange(c, project, job, `${project} already runs what it should; nothing to do`);
    });

  for (const [verb, frozen] of [['freeze', true], ['thaw', false]] as const) {
    program
      .command(`${verb} <project>`)
      .description(frozen
        ? 'no automatic tasks for PROJECT (replacing failed or lost instances, convergence) until `enjin thaw`; your own requests still run'
        : 'let the platform repair and converge PROJECT again')
      .action(async (project: string) => {
        const { project: p } = await client().freeze(project, frozen);
        print({ project: p }, () => (frozen
          ? `${project} is frozen: nothing is replaced or converged automatically until \`enjin thaw ${project}\``
          : `${project} is thawed: the platform repairs and converges it again`));
      });
  }
}
