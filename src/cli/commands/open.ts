// `enjin open [SERVICE]`: a service's URL, printed, and opened in a browser when one is at hand.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import type { ProjectView } from '../../core/api.ts';
import { EnjinError } from '../../core/errors.ts';
import { client, globals } from '../program.ts';
import { projectName } from '../project-name.ts';

/**
 * The URL to open: the named service's first hostname (the manifest's own before the generated one), else `web`'s,
 * else the first service that listens.
 */
export function serviceUrl(project: ProjectView, service: string | undefined): string {
  const listening = project.services.filter((s) => s.listens);
  const chosen = service ? project.services.find((s) => s.name === service) : (listening.find((s) => s.name === 'web') ?? listening[0]);
  if (service && !chosen) {
    throw new EnjinError('unknown_service', `project ${project.name} has no service ${service}; its services: ${project.services.map((s) => s.name).join(', ') || 'none'}`, { status: 404 });
  }
  if (!chosen) {
    throw new EnjinError('not_deployed', project.version === null
      ? `project ${project.name} has no version yet; deploy it with \`enjin deploy DIR\``
      : `no service of project ${project.name} listens on a port, so none has a URL`, { status: 404 });
  }
  const urls = chosen.urls ?? chosen.hostnames.map((h) => `http://${h.replace(/^\*\./, 'any.')}`);
  if (!urls.length) throw new EnjinError('unknown_service', `service ${chosen.name} of project ${project.name} does not listen on a port, so it has no URL`, { status: 400 });
  return urls[0];
}

/**
 * How to open a URL here, or null when no browser is at hand: $BROWSER when set (it may carry arguments, as for
 * xdg-open), else xdg-open on a graphical session (X11 or Wayland). A server over SSH has neither: print only.
 */
export function browserCommand(env: NodeJS.ProcessEnv): { command: string; args: string[] } | null {
  if (env.BROWSER) return { command: 'sh', args: ['-c', `${env.BROWSER} "$1"`, 'enjin-open'] };
  if (env.DISPLAY || env.WAYLAND_DISPLAY) return { command: 'xdg-open', args: [] };
  return null;
}

/** Starts the browser and lets it live on its own; a failure is said on stderr (the URL is printed anyway). */
function openInBrowser(url: string): Promise<void> {
  const how = browserCommand(process.env);
  if (!how) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn(how.command, [...how.args, url], { detached: true, stdio: 'ignore' });
    child.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? `${how.command} is not installed` : err.message;
      process.stderr.write(`could not open a browser (${why}); open the URL above yourself\n`);
      resolve();
    });
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
}

export function registerOpen(program: Command): void {
  program
    .command('open [service]')
    .description("print a service's URL (default: web) and open it in a browser when one is at hand")
    .option('-p, --project <name>', 'project')
    .action(async (service: string | undefined, o: { project?: string }) => {
      const c = client();
      const { project } = await c.project(await projectName(o.project, c));
      const url = serviceUrl(project, service);
      if (globals().json) {
        process.stdout.write(`${JSON.stringify({ url })}\n`);
        return;
      }
      process.stdout.write(`${url}\n`);
      await openInBrowser(url);
    });
}
