// `enjin deploy`: pack a directory, upload it as a version and follow its rollout.
import type { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { packDirectory } from '../../artifact/pack.ts';
import { EnjinError } from '../../core/errors.ts';
import { NAME_PATTERN } from '../../core/ids.ts';
import { parseManifestParts } from '../../core/manifest.ts';
import { followJob } from '../follow-job.ts';
import { client, globals, print } from '../program.ts';
import { duration } from '../render.ts';
import { actOnRollout, followRollout, reportRollout, rolloutProject } from './deploy-rollout.ts';
import { queueText } from '../queue-note.ts';

export function registerDeploy(program: Command): void {
  program
    .command('deploy [dir]')
    .description('pack DIR (default .), upload it as a new version and roll it out, showing the job tree')
    .option('-p, --project <name>', 'project name (default: enjin.yaml\'s, else the directory\'s name)')
    .option('--detach', 'return once the deploy has started instead of following it')
    .option('--promote', 'promote the canaries of the paused rollout of --project (or DIR\'s project) and follow it')
    .option('--abort', 'abort the rollout of --project (or DIR\'s project), putting the previous version back')
    .action(async (dir: string | undefined, o: { project?: string; detach?: boolean; promote?: boolean; abort?: boolean }) => {
      if (o.promote && o.abort) throw new EnjinError('invalid_request', '--promote and --abort exclude each other: pass one');
      if (o.promote || o.abort) return actOnRollout(client(), o.project ?? rolloutProject(() => projectFor(resolve(dir ?? '.'), undefined)), o.promote ? 'promote' : 'abort');
      const root = resolve(dir ?? '.');
      if (!existsSync(root)) throw new EnjinError('not_found', `${root} does not exist`, { status: 404 });
      const project = projectFor(root, o.project);
      const c = client();
      const pkg = await packDirectory(root);
      if (!globals().json) process.stderr.write(`packed ${pkg.files} files (${(pkg.size / 1024).toFixed(1)} KiB, sha256 ${pkg.sha256.slice(0, 12)}) for ${project}\n`);
      const res = await c.deploy(project, pkg.tarball, gitHead(root));
      if (!res.job) {
        print({ project: res.project, version: res.version, job: null }, () => `${project} v${res.version.number} is already running; nothing to do`);
        return;
      }
      const queued = queueText(res.job);
      if (!globals().json) process.stderr.write(`${res.created ? 'created' : 'reusing'} version v${res.version.number}; job ${res.job.id}${queued ? ` ${queued}` : ''}\n`);
      if (o.detach) {
        print({ project: res.project, version: res.version, job: res.job }, () => `deploy ${queued ? `${queued}: it starts when the project's earlier changes end;` : 'started:'} follow it with \`enjin jobs show ${res.job!.id} -f\``);
        return;
      }
      if (queued && !globals().json) process.stderr.write(`following it when it starts (\`enjin jobs abort ${res.job.id}\` takes it out of the queue)\n`);
      if (res.job.params.rollout) return reportRollout(project, await followRollout(c, project, res.job.id, 0), { project: res.project, version: res.version });
      const tree = await followJob(c, res.job.id);
      const after = await c.project(project);
      print({ project: after.project, version: res.version, job: tree }, () => {
        // The reason was printed with the tree already (with the app's last lines): said once is enough.
        if (tree.state !== 'succeeded') return `deploy of ${project} v${res.version.number} ${tree.state}`;
        const urls = after.project.services.flatMap((s) => (s.urls ?? s.hostnames.map((h) => `http://${h}`)).map((u) => `  ${s.name.padEnd(10)} ${u.replace('://*.', '://any.')}`));
        return [`${project} v${res.version.number} is live in ${duration(tree)}`, ...urls].join('\n');
      });
    });
}

/**
 * The commit a git checkout is at and its subject line, for `enjin releases`; null when `dir` is not a checkout or git
 * is not installed (a deploy needs neither).
 */
function gitHead(dir: string): { commit: string; message: string } | undefined {
  const git = (args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  try {
    const commit = git(['rev-parse', 'HEAD']);
    return { commit, message: git(['log', '-1', '--format=%s']).slice(0, 200) };
  } catch {
    return undefined; // not a git checkout (or no git): the release is recorded as a plain deploy
  }
}

/** Files a directory is deployable by: a manifest, or what a builder detects (see core/builders/detect.ts). */
const DEPLOYABLE_BY = ['enjin.yaml', 'enjin.yml', 'Procfile', 'package.json', 'requirements.txt', 'pyproject.toml', 'Pipfile', 'index.html'];

/** The project to deploy as: --project, else enjin.yaml's `project`, else the directory's name made a valid name. */
function projectFor(root: string, given: string | undefined): string {
  if (!DEPLOYABLE_BY.some((f) => existsSync(join(root, f)))) {
    throw new EnjinError('manifest_missing', `${root} has nothing enjin knows how to run: add a Procfile ("web: node server.js"), an enjin.yaml, or deploy an app with a package.json, requirements.txt, pyproject.toml, Pipfile or index.html`, { status: 422 });
  }
  const manifestPath = ['enjin.yaml', 'enjin.yml'].map((f) => join(root, f)).find((p) => existsSync(p));
  const named = manifestPath ? manifestProject(manifestPath) : null;
  if (given && named && given !== named) throw new EnjinError('project_mismatch', `${relativeName(manifestPath!)} says project "${named}" but --project says "${given}"; drop --project or change the manifest`);
  const project = given ?? named ?? basename(root).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
  if (!NAME_PATTERN.test(project)) throw new EnjinError('project_required', `cannot make a project name from "${basename(root)}"; pass --project NAME`);
  return project;
}

/** enjin.yaml's `project:`, checked with the rest of the file as the controller will (null when it names none). */
function manifestProject(path: string): string | null {
  const text = readFileSync(path, 'utf8');
  const parts = parseManifestParts(text, relativeName(path), '');
  return parts.manifest.project || null;
}

function relativeName(p: string): string {
  const rel = p.startsWith(process.cwd() + '/') ? p.slice(process.cwd().length + 1) : p;
  return rel;
}
