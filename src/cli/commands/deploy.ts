// `enjin deploy`: pack a directory, upload it as a version and follow its rollout.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { packDirectory } from '../../artifact/pack.ts';
import { EnjinError } from '../../core/errors.ts';
import { NAME_PATTERN } from '../../core/ids.ts';
import { followJob } from '../follow-job.ts';
import { client, globals, print } from '../program.ts';
import { duration } from '../render.ts';

export function registerDeploy(program: Command): void {
  program
    .command('deploy [dir]')
    .description('pack DIR (default .), upload it as a new version and roll it out, showing the job tree')
    .option('-p, --project <name>', 'project name, for a directory without enjin.yaml (a Procfile project)')
    .option('--detach', 'return once the deploy has started instead of following it')
    .action(async (dir: string | undefined, o: { project?: string; detach?: boolean }) => {
      const root = resolve(dir ?? '.');
      if (!existsSync(root)) throw new EnjinError('not_found', `${root} does not exist`, { status: 404 });
      let project = o.project;
      const manifestPath = join(root, 'enjin.yaml');
      if (existsSync(manifestPath)) {
        const { parseManifest } = await import('../../core/manifest.ts');
        const manifest = parseManifest(readFileSync(manifestPath, 'utf8'), relativeName(manifestPath));
        if (project && project !== manifest.project) throw new EnjinError('project_mismatch', `enjin.yaml says project "${manifest.project}" but --project says "${project}"; drop --project or change the manifest`);
        project = manifest.project;
      } else if (existsSync(join(root, 'Procfile'))) {
        project ??= basename(root).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
        if (!NAME_PATTERN.test(project)) throw new EnjinError('project_required', `cannot make a project name from "${basename(root)}"; pass --project NAME`);
      } else {
        throw new EnjinError('manifest_missing', `${root} has no enjin.yaml or Procfile; add an enjin.yaml that says what to run`, { status: 422 });
      }
      const c = client();
      const pkg = await packDirectory(root);
      if (!globals().json) process.stderr.write(`packed ${pkg.files} files (${(pkg.size / 1024).toFixed(1)} KiB, sha256 ${pkg.sha256.slice(0, 12)}) for ${project}\n`);
      const res = await c.deploy(project, pkg.tarball);
      if (!res.job) {
        print({ project: res.project, version: res.version, job: null }, () => `${project} v${res.version.number} is already running; nothing to do`);
        return;
      }
      if (!globals().json) process.stderr.write(`${res.created ? 'created' : 'reusing'} version v${res.version.number}; job ${res.job.id}\n`);
      if (o.detach) {
        print({ project: res.project, version: res.version, job: res.job }, () => `deploy started: follow it with \`enjin jobs show ${res.job!.id}\``);
        return;
      }
      const tree = await followJob(c, res.job.id);
      const after = await c.project(project);
      print({ project: after.project, version: res.version, job: tree }, () => {
        if (tree.state !== 'succeeded') return `deploy of ${project} v${res.version.number} ${tree.state}: ${tree.error ?? ''}`;
        const urls = after.project.services.flatMap((s) => s.hostnames.map((h) => `  ${s.name.padEnd(10)} http://${h.replace(/^\*\./, 'any.')}`));
        return [`${project} v${res.version.number} is live in ${duration(tree)}`, ...urls].join('\n');
      });
    });
}

function relativeName(p: string): string {
  const rel = p.startsWith(process.cwd() + '/') ? p.slice(process.cwd().length + 1) : p;
  return rel;
}
