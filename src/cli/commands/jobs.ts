// `enjin jobs`, `jobs show`, `jobs abort`: list job trees page by page, look into one, stop one.
import { Option, type Command } from 'commander';
import { toCount } from '../arguments.ts';
import { followJob } from '../follow-job.ts';
import { ago, table } from '../format.ts';
import { client, globals, print } from '../program.ts';
import { duration, flatten, treeLines } from '../render.ts';
import { queueText } from '../queue-note.ts';

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('list job trees; `jobs show ID`, `jobs abort ID`')
    .option('-p, --project <name>', 'only this project')
    .option('--service <name>', 'only jobs about this service')
    .option('--version <v>', 'only jobs about this version, e.g. v3')
    .option('--node <id>', 'only jobs on this node')
    .option('--state <states>', 'only these states, comma-separated (queued,waiting,running,succeeded,failed,aborted)')
    .addOption(new Option('-n, --limit <n>', 'how many (at most 500)').default(20).argParser(toCount))
    .option('--before <id>', 'the page after this job (the id the previous page ends with)')
    .action(async (o: { project?: string; service?: string; version?: string; node?: string; state?: string; limit: number; before?: string }) => {
      const c = client();
      const { jobs: list, next } = await c.jobs({ project: o.project, service: o.service, version: o.version, node: o.node, state: o.state?.split(',') as never, limit: o.limit, before: o.before });
      print({ jobs: list, next }, () => {
        if (!list.length) return o.before ? 'no older jobs' : 'no jobs';
        // A queued tree shows where it stands in its project's queue.
        const rows = table([
          ['ID', 'STATE', 'WHAT', 'PROJECT', 'STARTED', 'TOOK'],
          ...list.map((j) => [j.id, queueText(j) ?? j.state, j.title, j.tags.project ?? '', j.state === 'queued' ? '-' : ago(j.createdAt), j.state === 'queued' ? '-' : duration(j)]),
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
    .description("abort a job's whole tree: running jobs are stopped, waiting ones never run; a queued tree leaves its queue")
    .action(async (id: string) => {
      const c = client();
      const { job } = await c.abortJob(id);
      print({ job }, () => `${job.title}: ${job.state}${job.error ? ` (${job.error})` : ''}`);
    });
}
