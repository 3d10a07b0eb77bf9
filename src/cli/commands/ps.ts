// `enjin ps`: the instances and where they run.
import type { Command } from 'commander';
import type { InstanceView } from '../../client/client.ts';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';

export function registerPs(program: Command): void {
  program
    .command('ps [project]')
    .description("list instances: state, node, port, restarts")
    .action(async (project: string | undefined) => {
      const c = client();
      const { instances } = await c.instances(project);
      print({ instances }, () => instances.length ? table([
        ['PROJECT', 'SERVICE', 'INSTANCE', 'VERSION', 'STATE', 'NODE', 'ADDRESS', 'PID', 'RESTARTS', 'AGE'],
        ...instances.map((i: InstanceView) => [i.project, i.service, i.id, i.version ? `v${i.version}` : '', i.desired === 'stopped' && i.state === 'running' ? 'stopping' : i.state, i.node, i.port ? `${i.host}:${i.port}` : '-', String(i.pid ?? '-'), String(i.restarts), ago(i.createdAt)]),
      ]) : 'no instances');
    });
}
