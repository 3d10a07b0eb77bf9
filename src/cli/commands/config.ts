// `enjin config`, `config set`, `config unset`, `config get`: a project's config vars. A change is a new release of
// the same build, rolled out one instance at a time; values are shown only by `get` and `--reveal`.
import type { Command } from 'commander';
import { EnjinError } from '../../core/errors.ts';
import type { ConfigVars } from '../../core/model.ts';
import type { EnjinClient as Client } from '../../client/client.ts';
import { followJob } from '../follow-job.ts';
import { table } from '../format.ts';
import { client, globals, print } from '../program.ts';
import { projectName } from '../project-name.ts';

export function registerConfig(program: Command): void {
  const config = program.command('config')
    .description("list a project's config vars (values hidden unless --reveal); `config set K=V…`, `config unset K…`, `config get K`")
    .option('-p, --project <name>', 'project')
    .option('--service <name>', "only this service's own vars")
    .option('--reveal', 'show the values')
    .action(async (o: { project?: string; service?: string; reveal?: boolean }) => {
      const c = client();
      const project = await projectName(o.project, c);
      const res = await c.config(project, !!o.reveal);
      const shown = o.service ? { project: {}, services: { [o.service]: res.config.services[o.service] ?? {} } } : res.config;
      print({ release: res.release, revealed: res.revealed, config: shown }, () => {
        const rows = configRows(shown);
        if (!rows.length) return `${project} has no config vars; set some with \`enjin config set KEY=VALUE\``;
        return table([['KEY', 'SERVICE', 'VALUE'], ...rows]);
      });
    });

  config.command('set <pairs...>')
    .description('set config vars (KEY=VALUE …): a new release of the same build, rolled out one instance at a time')
    .option('-p, --project <name>', 'project')
    .option('--service <name>', 'for this service only (default: every service)')
    .option('--detach', 'return once the release has started instead of following it')
    .action(async (pairs: string[], own: { project?: string; service?: string; detach?: boolean }) => {
      const o = withParent(config, own);
      const set: Record<string, string> = {};
      for (const pair of pairs) {
        const eq = pair.indexOf('=');
        if (eq <= 0) throw new EnjinError('invalid_request', `"${pair.slice(0, 40)}" is not KEY=VALUE; write it as NAME=value (quote the whole pair for spaces)`);
        set[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      await change(await clientAndProject(o.project), { set, ...(o.service ? { service: o.service } : {}) }, o.detach);
    });

  config.command('unset <keys...>')
    .description('remove config vars: a new release of the same build')
    .option('-p, --project <name>', 'project')
    .option('--service <name>', "from this service's own vars")
    .option('--detach', 'return once the release has started instead of following it')
    .action(async (keys: string[], own: { project?: string; service?: string; detach?: boolean }) => {
      const o = withParent(config, own);
      await change(await clientAndProject(o.project), { unset: keys, ...(o.service ? { service: o.service } : {}) }, o.detach);
    });

  config.command('get <key>')
    .description("print one config var's value (a service's own, else the project-wide one)")
    .option('-p, --project <name>', 'project')
    .option('--service <name>', "this service's value")
    .action(async (key: string, own: { project?: string; service?: string }) => {
      const o = withParent(config, own);
      const { c, project } = await clientAndProject(o.project);
      const { config: vars } = await c.config(project, true);
      const serviceVars = o.service ? vars.services[o.service] : undefined;
      const value = serviceVars && Object.hasOwn(serviceVars, key) ? serviceVars[key] : Object.hasOwn(vars.project, key) ? vars.project[key] : undefined;
      if (value === undefined) throw new EnjinError('config_not_found', `${key} is not set for ${project}${o.service ? ` (${o.service})` : ''}; \`enjin config\` lists what is`, { status: 404 });
      print({ key, value }, () => value);
    });
}

/**
 * A subcommand's options with `config`'s: commander gives `--project` and `--service` to the parent when both define
 * them, wherever they are written (`enjin config set K=V --service web` must not set K for every service).
 */
function withParent<T extends { project?: string; service?: string }>(parent: Command, own: T): T {
  const p = parent.opts<{ project?: string; service?: string }>();
  return { ...own, project: own.project ?? p.project, service: own.service ?? p.service };
}

async function clientAndProject(given: string | undefined): Promise<{ c: Client; project: string }> {
  const c = client();
  return { c, project: await projectName(given, c) };
}

async function change(target: { c: Client; project: string }, body: { set?: Record<string, string>; unset?: string[]; service?: string }, detach?: boolean): Promise<void> {
  const { c, project } = target;
  const res = await c.changeConfig(project, body);
  if (!res.job) {
    // Before the first release the change waits for it; a release with nothing to start (scaled to 0) is done.
    const said = res.release ? `${project} v${res.release.number}: ${res.release.description}` : `${project} has no release yet: the first deploy gets this config`;
    print({ release: res.release, job: null, config: res.config }, () => said);
    return;
  }
  if (!globals().json) process.stderr.write(`release v${res.release!.number} (${res.release!.description}); job ${res.job.id}\n`);
  if (detach) {
    print({ release: res.release, job: res.job, config: res.config }, () => `release started: follow it with \`enjin jobs show ${res.job!.id}\``);
    return;
  }
  const tree = await followJob(c, res.job.id);
  print({ release: res.release, job: tree, config: res.config }, () => (tree.state === 'succeeded' ? `${project} v${res.release!.number} is live (${res.release!.description})` : `release of ${project} v${res.release!.number} ${tree.state}`));
}

/** One row per var: project-wide ones first, then each service's own. */
function configRows(config: ConfigVars): string[][] {
  const rows = Object.entries(config.project).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, '(all)', v]);
  for (const [service, vars] of Object.entries(config.services).sort(([a], [b]) => (a < b ? -1 : 1))) {
    for (const [k, v] of Object.entries(vars).sort(([a], [b]) => (a < b ? -1 : 1))) rows.push([k, service, v]);
  }
  return rows;
}
