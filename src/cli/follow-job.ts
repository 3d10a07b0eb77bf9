// Following a job tree live from the commands that start one (deploy, scale, rollback, destroy, jobs show -f).
import type { EnjinClient, JobTree } from '../client/client.ts';
import { globals } from './program.ts';
import { flatten, watchTree } from './render.ts';

/** Follows a job tree to its end, then exits non-zero unless it succeeded, with the failing job's log tail. */
export async function followJob(c: EnjinClient, jobId: string): Promise<JobTree> {
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
