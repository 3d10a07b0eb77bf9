// `enjin ps`: the instances and where they run, with their health, the app's pid and how its last run ended.
import type { Command } from 'commander';
import type { InstanceView } from '../../client/client.ts';
import { ago, table } from '../format.ts';
import { client, print } from '../program.ts';

/** `code 1, 3m ago`, `SIGKILL, 5s ago`, `out of memory, 1h ago`; `-` when it never ended. */
export function lastExitText(exit: InstanceView['lastExit']): string {
  if (!exit) return '-';
  const how = exit.oomKilled ? 'out of memory' : exit.signal ? exit.signal : exit.code !== null ? `code ${exit.code}` : 'ended unseen';
  return `${how}, ${ago(exit.at)}`;
}

/** `healthy`, `unhealthy: HTTP 503 from /healthz`, `starting`; `-` without a health check (or a process). */
export function healthText(i: Pick<InstanceView, 'health' | 'probe'>): string {
  if (i.health === 'none' || !i.health) return '-';
  if (i.health !== 'unhealthy') return i.health;
  const reason = (i.probe?.output ?? '').split('\n')[0].trim();
  return reason ? `unhealthy: ${reason.length > 60 ? `${reason.slice(0, 59)}…` : reason}` : 'unhealthy';
}

export function registerPs(program: Command): void {
  program
    .command('ps [project]')
    .description('list instances: state, health, node, address, pid, restarts and how the last run ended')
    .action(async (project: string | undefined) => {
      const c = client();
      const [{ instances }, { projects }] = await Promise.all([c.instances(project), c.projects()]);
      // Frozen projects get no replacements: said under the table, and listed in --json.
      const frozen = projects.filter((p) => p.frozen && (!project || p.name === project)).map((p) => p.name);
      const note = frozen.length ? `\nfrozen (no automatic replacements until \`enjin thaw\`): ${frozen.join(', ')}` : '';
      print({ instances, frozen }, () => (instances.length ? table([
        ['PROJECT', 'SERVICE', 'INSTANCE', 'VERSION', 'STATE', 'HEALTH', 'NODE', 'ADDRESS', 'PID', 'RESTARTS', 'LAST EXIT', 'AGE'],
        ...instances.map((i: InstanceView) => [
          i.project,
          i.service,
          i.id,
          i.version ? `v${i.version}` : '',
          i.desired === 'stopped' && i.state === 'running' ? 'stopping' : i.state,
          healthText(i),
          i.nodeName,
          i.port ? `${i.host}:${i.port}` : '-',
          String(i.pid ?? '-'),
          String(i.restarts),
          lastExitText(i.lastExit),
          ago(i.createdAt),
        ]),
      ]) : 'no instances') + note);
    });
}
