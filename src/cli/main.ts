// The `enjin` command line: every command talks to the controller's API through the typed client (except `up`),
// prints for people by default and JSON with --json, and sends errors to stderr with a non-zero exit.
import { Command, CommanderError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { EnjinError, formatError } from '../core/errors.ts';
import { NAME_PATTERN } from '../core/ids.ts';
import { EnjinClient, findCredentials, type InstanceView, type JobTree } from '../client/client.ts';
import { packDirectory } from '../artifact/pack.ts';
import { flatten, treeLines, watchTree, duration } from './render.ts';
import { parse as parseYaml } from 'yaml';

interface GlobalOpts {
  data?: string;
  json?: boolean;
}

const program = new Command();
program
  .name('enjin')
  .description('A self-hosted cloud: give it machines, deploy directories, reach them by hostname.')
  .option('--data <dir>', 'data directory of the local enjin (its credentials.json is used); default ENJIN_DATA or ./.enjin')
  .option('--json', 'print machine-readable JSON')
  .showHelpAfterError()
  .exitOverride();

const globals = (): GlobalOpts => program.opts<GlobalOpts>();
const client = () => new EnjinClient(findCredentials(globals().data));
const print = (json: unknown, human: () => string) => {
  process.stdout.write(globals().json ? `${JSON.stringify(json, null, 2)}\n` : `${human()}\n`);
};

/** The project a command is about: --project, else ./enjin.yaml's, else the only one there is. */
async function projectName(explicit: string | undefined, c: EnjinClient): Promise<string> {
  if (explicit) return explicit;
  const manifest = join(process.cwd(), 'enjin.yaml');
  if (existsSync(manifest)) {
    try {
      const doc = parseYaml(readFileSync(manifest, 'utf8')) as { project?: unknown };
      if (typeof doc?.project === 'string') return doc.project;
    } catch {
      // a broken manifest: fall through to the other ways of knowing
    }
  }
  const { projects } = await c.projects();
  if (projects.length === 1) return projects[0].name;
  throw new EnjinError('project_required', projects.length ? `say which project with --project (one of ${projects.map((p) => p.name).join(', ')})` : 'there are no projects yet; deploy one with `enjin deploy DIR`', { status: 400 });
}

function table(rows: string[][]): string {
  if (!rows.length) return '';
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => (r[k] ?? '').length)));
  return rows.map((r) => r.map((cell, k) => (k === r.length - 1 ? cell : cell.padEnd(widths[k]))).join('  ')).join('\n');
}

function ago(iso: string | null | undefined): string {
  if (!iso) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : s < 86400 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`;
}

/** Follows a job tree to its end, then exits non-zero unless it succeeded, with the failing job's log tail. */
async function followJob(c: EnjinClient, jobId: string): Promise<JobTree> {
  // Leaving the view does not stop the work: say so, and how to stop it.
  process.once('SIGINT', () => {
    process.stderr.write(`\njob ${jobId} goes on without this view; follow it with \`enjin jobs show ${jobId} -f\` or stop it with \`enjin jobs abort ${jobId}\`\n`);
    process.exit(130);
  });
  let tree: JobTree | null = null;
  if (globals().json) {
    for await (const t of c.watchJob(jobId)) tree = t;
    if (!tree) throw new Error(`the job stream of ${jobId} ended early`);
  } else {
    tree = await watchTree(c.watchJob(jobId), process.stderr.isTTY ? process.stderr : process.stdout);
  }
  if (tree.state !== 'succeeded') {
    const failed = flatten(tree).filter((j) => j.state === 'failed' && j.id !== tree.id);
    for (const j of failed) {
      process.stderr.write(`\n${j.title} failed: ${j.error ?? ''}\n`);
      const tail = (j.log ?? []).slice(-25);
      if (tail.length) process.stderr.write(`last ${tail.length} line(s) of its log:\n${tail.map((l) => `  ${l}`).join('\n')}\n`);
    }
    process.exitCode = 1;
  }
  return tree;
}

program
  .command('up')
  .description('run controller and agent in this process and the router in a child process, on an embedded store (Ctrl-C stops all of it)')
  .addOption(new Option('--api-port <port>', 'API port').default(7070).argParser(toPort))
  .addOption(new Option('--router-port <port>', 'router (HTTP) port').default(8080).argParser(toPort))
  .option('--api-host <host>', 'address the API listens on', '127.0.0.1')
  .option('--router-host <host>', 'address the router listens on', '0.0.0.0')
  .option('--domain <domain>', 'domain of generated hostnames SERVICE.PROJECT.DOMAIN', 'localhost')
  .option('--database-url <url>', 'use a PostgreSQL server instead of the embedded store')
  .addOption(new Option('--port-range <from-to>', 'ports given to instances').default('20000-29999'))
  .addOption(new Option('--router-max-connections <n>', 'client connections the router accepts (default: from the descriptor limit)').argParser(toCount))
  .addOption(new Option('--min-free-disk <size>', 'below this much free disk for versions and logs the node warns and takes nothing new (e.g. 512M, 2G)').default('1G'))
  .option('--instance-memory <size>', 'memory limit of each instance, e.g. 512M or 2G, or off (default: 1G, or half the host\'s memory if less)')
  .action(async (o) => {
    // First, so that every role started from here (and every child: router, instances) has the raised limit.
    const { raiseNofileLimit } = await import('../process/fd-limit.ts');
    process.stderr.write(`${raiseNofileLimit().message}\n`);
    const { up, parseMemorySize } = await import('./up.ts');
    const instanceMemoryBytes = o.instanceMemory === undefined ? undefined : parseMemorySize(String(o.instanceMemory));
    const dataDir = resolve(globals().data ?? process.env.ENJIN_DATA ?? '.enjin');
    const [from, to] = String(o.portRange).split('-').map(Number);
    if (!(from > 0 && to >= from && to < 65536)) throw new EnjinError('invalid_request', `--port-range must look like 20000-29999 (got ${o.portRange})`);
    if (!globals().json) {
      const first = !existsSync(join(dataDir, 'store')) && !o.databaseUrl;
      process.stderr.write(first ? `starting enjin in ${dataDir} (the first start creates its store: a few seconds)…\n` : `starting enjin in ${dataDir}…\n`);
    }
    const running = await up({
      dataDir, apiHost: o.apiHost, apiPort: o.apiPort, routerHost: o.routerHost, routerPort: o.routerPort, domain: o.domain,
      databaseUrl: o.databaseUrl ?? process.env.ENJIN_DATABASE_URL, portRange: [from, to], routerMaxConnections: o.routerMaxConnections,
      minFreeDiskBytes: parseSize('--min-free-disk', o.minFreeDisk), instanceMemoryBytes,
    });
    print({ api: running.apiUrl, router: `http://${o.routerHost}:${running.routerPort}`, routerMaxConnections: running.routerMaxConnections, data: dataDir, credentials: running.credentialsFile }, () => [
      `enjin is up`,
      `  API          ${running.apiUrl}  (token in ${running.credentialsFile})`,
      `  router       http://${o.routerHost === '0.0.0.0' ? '127.0.0.1' : o.routerHost}:${running.routerPort}  (apps at http://SERVICE.PROJECT.${o.domain}:${running.routerPort}; at most ${running.routerMaxConnections} connections)`,
      `  data         ${dataDir}`,
      `deploy a directory with: enjin deploy DIR   (Ctrl-C stops everything)`,
    ].join('\n'));
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) {
        process.stderr.write('stopping now, without waiting\n');
        process.exit(130);
      }
      stopping = true;
      if (!globals().json) process.stderr.write(`\n${signal}: stopping instances, router, agent and controller…\n`);
      running.stop().then(() => process.exit(0), (err) => { process.stderr.write(`${formatError(err)}\n`); process.exit(1); });
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

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
      const { parseManifest } = await import('../core/manifest.ts');
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

program
  .command('logs <service>')
  .description("print a service's logs (SERVICE or PROJECT/SERVICE); -f follows")
  .option('-p, --project <name>', 'project')
  .option('-f, --follow', 'keep printing new lines')
  .addOption(new Option('-n, --lines <n>', 'lines per instance to start with').default(100).argParser(toCount))
  .action(async (service: string, o: { project?: string; follow?: boolean; lines: number }) => {
    const c = client();
    let projectArg = o.project;
    if (service.includes('/')) [projectArg, service] = service.split('/', 2);
    const project = await projectName(projectArg, c);
    let cursor: string | undefined;
    const emit = (entries: Array<{ instanceId: string; service: string; data: string }>) => {
      for (const e of entries) {
        if (!e.data) continue;
        if (globals().json) for (const line of e.data.split('\n').filter(Boolean)) process.stdout.write(`${JSON.stringify({ instance: e.instanceId, service: e.service, line })}\n`);
        else for (const line of e.data.split('\n').filter((l, k, a) => l || k < a.length - 1)) process.stdout.write(`${e.service}.${e.instanceId.slice(-6)} | ${line}\n`);
      }
    };
    let res = await c.logs(project, { service, lines: o.lines });
    emit(res.entries);
    cursor = res.cursor;
    while (o.follow) {
      await new Promise((r) => setTimeout(r, 500));
      res = await c.logs(project, { service, cursor });
      emit(res.entries);
      cursor = res.cursor;
    }
  });

program
  .command('scale <changes...>')
  .description('set instance counts: web=3, worker=+1, web=-1')
  .option('-p, --project <name>', 'project')
  .action(async (changes: string[], o: { project?: string }) => {
    const services: Record<string, string> = {};
    for (const ch of changes) {
      const m = /^([a-z][a-z0-9-]*)=([+-]?\d+)$/.exec(ch);
      if (!m) throw new EnjinError('invalid_request', `"${ch}" is not SERVICE=N, SERVICE=+N or SERVICE=-N`);
      services[m[1]] = m[2];
    }
    const c = client();
    const project = await projectName(o.project, c);
    const res = await c.scale(project, services);
    if (!res.job) return print({ project: res.project, job: null }, () => `${project} already runs that many; nothing to do`);
    const tree = await followJob(c, res.job.id);
    const after = await c.project(project);
    print({ project: after.project, job: tree }, () => after.project.services.map((s) => `${s.name}: ${s.running}/${s.desired} running`).join('\n'));
  });

program
  .command('versions')
  .description("list a project's versions")
  .option('-p, --project <name>', 'project')
  .action(async (o: { project?: string }) => {
    const c = client();
    const project = await projectName(o.project, c);
    const { versions } = await c.versions(project);
    print({ versions }, () => table([
      ['VERSION', 'ID', 'SHA256', 'SIZE', 'SERVICES', 'CREATED', ''],
      ...versions.map((v) => [`v${v.number}`, v.id, v.sha256.slice(0, 12), `${(v.size / 1024).toFixed(1)}K`, Object.keys(v.services).join(','), ago(v.createdAt), v.current ? (v.routed ? 'current' : 'current (rolling out)') : v.routed ? 'routed' : '']),
    ]));
  });

program
  .command('rollback [version]')
  .description('deploy an earlier version again (default: the one before the current one)')
  .option('-p, --project <name>', 'project')
  .action(async (version: string | undefined, o: { project?: string }) => {
    const c = client();
    const project = await projectName(o.project, c);
    const res = await c.rollback(project, version);
    if (!res.job) return print({ version: res.version, job: null }, () => `${project} already runs v${res.version.number}`);
    const tree = await followJob(c, res.job.id);
    print({ version: res.version, job: tree }, () => tree.state === 'succeeded' ? `${project} is back on v${res.version.number}` : `rollback ${tree.state}`);
  });

const jobs = program.command('jobs').description('list job trees; `jobs show ID`, `jobs abort ID`')
  .option('-p, --project <name>', 'only this project')
  .option('--service <name>', 'only jobs about this service')
  .option('--version <v>', 'only jobs about this version, e.g. v3')
  .option('--node <id>', 'only jobs on this node')
  .option('--state <states>', 'only these states, comma-separated (waiting,running,succeeded,failed,aborted)')
  .addOption(new Option('-n, --limit <n>', 'how many (at most 500)').default(20).argParser(toCount))
  .option('--before <id>', 'the page after this job (the id the previous page ends with)')
  .action(async (o: { project?: string; service?: string; version?: string; node?: string; state?: string; limit: number; before?: string }) => {
    const c = client();
    const { jobs: list, next } = await c.jobs({ project: o.project, service: o.service, version: o.version, node: o.node, state: o.state?.split(',') as never, limit: o.limit, before: o.before });
    print({ jobs: list, next }, () => {
      if (!list.length) return o.before ? 'no older jobs' : 'no jobs';
      const rows = table([
        ['ID', 'STATE', 'WHAT', 'PROJECT', 'STARTED', 'TOOK'],
        ...list.map((j) => [j.id, j.state, j.title, j.tags.project ?? '', ago(j.createdAt), duration(j)]),
      ]);
      if (next === null) return rows;
      // The same command with the cursor: filters and page size stay as given.
      const args = process.argv.slice(2).filter((a, i, all) => a !== '--before' && all[i - 1] !== '--before' && !a.startsWith('--before='));
      return `${rows}\nmore: enjin ${args.join(' ')} --before ${next}`;
    });
  });

jobs.command('show <id>')
  .description('a job tree with states and logs; --follow waits for it to end')
  .option('-f, --follow', 'follow it live until it ends')
  .action(async (id: string, o: { follow?: boolean }) => {
    const c = client();
    if (o.follow) {
      const tree = await followJob(c, id);
      if (globals().json) print({ job: tree }, () => '');
      return;
    }
    const { job } = await c.job(id);
    print({ job }, () => {
      const lines = treeLines(job, { color: !!process.stdout.isTTY });
      const logs = flatten(job).filter((j) => j.log?.length).map((j) => `\n── ${j.title} (${j.id})\n${j.log!.map((l) => `  ${l}`).join('\n')}`);
      return [...lines, ...logs].join('\n');
    });
  });

jobs.command('abort <id>')
  .description("abort a job's whole tree: running jobs are stopped, waiting ones never run")
  .action(async (id: string) => {
    const c = client();
    const { job } = await c.abortJob(id);
    print({ job }, () => `${job.title}: ${job.state}${job.error ? ` (${job.error})` : ''}`);
  });

program
  .command('projects')
  .description('list projects')
  .action(async () => {
    const { projects } = await client().projects();
    print({ projects }, () => projects.length ? table([
      ['PROJECT', 'VERSION', 'SERVICES', 'HOSTNAMES'],
      ...projects.map((p) => [p.name, p.version ? `v${p.version}` : '-', p.services.map((s) => `${s.name} ${s.running}/${s.desired}`).join(', '), p.services.flatMap((s) => s.hostnames).join(' ')]),
    ]) : 'no projects; deploy one with `enjin deploy DIR`');
  });

program
  .command('destroy <project>')
  .description('stop every instance of PROJECT and remove it with its routes and versions')
  .action(async (project: string) => {
    const c = client();
    const { job } = await c.destroy(project);
    const tree = await followJob(c, job.id);
    print({ job: tree }, () => tree.state === 'succeeded' ? `${project} destroyed` : `destroy ${tree.state}`);
  });

program
  .command('nodes')
  .description('list nodes')
  .action(async () => {
    const { nodes } = await client().nodes();
    const free = (d?: { freeBytes: number; low: boolean } | null): string => (d ? `${(d.freeBytes / 2 ** 30).toFixed(1)} GiB${d.low ? ' (LOW)' : ''}` : '-');
    print({ nodes }, () => table([['NODE', 'ID', 'STATUS', 'ADDRESS', 'INSTANCES', 'DISK FREE', 'SEEN'], ...(nodes as Array<Record<string, never>>).map((n) => [n.name, n.id, n.status, n.address, String(n.instances), free(n.disk), ago(n.lastSeenAt)])]));
  });

program
  .command('stats')
  .description('request statistics per service, from every router')
  .action(async () => {
    const { routers } = await client().stats();
    print({ routers }, () => {
      const rows = [['ROUTER', 'SERVICE', 'REQUESTS', '2XX', '4XX', '5XX', 'P50', 'P99', 'IN', 'OUT']];
      for (const r of routers as Array<{ routerId: string; services?: Record<string, { requests: number; bytesIn: number; bytesOut: number; status: Record<string, number>; latency: { p50: number; p99: number } }> }>) {
        for (const [k, s] of Object.entries(r.services ?? {})) rows.push([r.routerId, k, String(s.requests), String(s.status['2xx']), String(s.status['4xx']), String(s.status['5xx']), `${s.latency.p50}ms`, `${s.latency.p99}ms`, String(s.bytesIn), String(s.bytesOut)]);
      }
      return table(rows);
    });
  });

/** "512M", "2G", "1048576" → bytes (binary units). */
function parseSize(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(String(value).trim());
  if (!m) throw new EnjinError('invalid_request', `${flag} must be a size such as 512M or 2G (got ${value})`);
  return Math.floor(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
}

function toPort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new EnjinError('invalid_request', `"${v}" is not a port number`);
  return n;
}

function toCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new EnjinError('invalid_request', `"${v}" is not a positive whole number`);
  return n;
}

function relativeName(p: string): string {
  const rel = p.startsWith(process.cwd() + '/') ? p.slice(process.cwd().length + 1) : p;
  return rel;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    if (program.opts<GlobalOpts>().json) process.stderr.write(`${JSON.stringify({ error: err instanceof EnjinError ? err.toJSON() : { code: 'internal', message: (err as Error).message } })}\n`);
    else process.stderr.write(`${formatError(err)}\n`);
    process.exitCode = 1;
  }
}
