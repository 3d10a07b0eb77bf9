// Following a job tree live from the commands that start one (deploy, scale, rollback, destroy, jobs show -f).
import type { EnjinClient, JobTree } from '../client/client.ts';
import { globals } from './program.ts';
import { failedJobs, isEndingLine, watchTree } from './render.ts';

/** Log lines of a failed job the summary shows: the end of its log, where the app's own output is (see actions.ts). */
const SUMMARY_LINES = 25;

/**
 * Why a tree failed, said once: each job that failed with its reason and the end of its log (for a failed start,
 * the instance's last output), without the engine's own "failed: …" line that would repeat the reason. logShown: the
 * log was streamed line by line already (output to a pipe or a file), so only the reason is added.
 */
export function failureSummary(tree: JobTree, opts: { logShown: boolean }): string {
  let out = '';
  for (const j of failedJobs(tree)) {
    out += `\n${j.title} failed: ${j.error ?? 'no reason given'}${opts.logShown ? ' (its log is above)' : ''}\n`;
    if (opts.logShown) continue;
    const tail = (j.log ?? []).filter((l) => !isEndingLine(j, l)).slice(-SUMMARY_LINES);
    if (tail.length) out += `its log:\n${tail.map((l) => `  ${l}`).join('\n')}\n`;
  }
  return out;
}

/** Follows a job tree to its end, then exits non-zero unless it succeeded, with the failing job's log tail. */
export async function followJob(c: EnjinClient, jobId: string): Promise<JobTree> {
  // Leaving the view does not stop the work: say so, and how to stop it.
  process.once('SIGINT', () => {
    process.stderr.write(`\njob ${jobId} goes on without this view; follow it with \`enjin jobs show ${jobId} -f\` or stop it with \`enjin jobs abort ${jobId}\`\n`);
    process.exit(130);
  });
  let tree: JobTree | null = null;
  // On a terminal the tree is redrawn with only the last lines of running jobs; elsewhere every log line is printed.
  const streamed = !globals().json && !process.stderr.isTTY;
  if (globals().json) {
    for await (const t of c.watchJob(jobId)) tree = t;
    if (!tree) throw new Error(`the job stream of ${jobId} ended early`);
  } else {
    tree = await watchTree(c.watchJob(jobId), process.stderr.isTTY ? process.stderr : process.stdout);
  }
  if (tree.state !== 'succeeded') {
    process.stderr.write(failureSummary(tree, { logShown: streamed }));
    process.exitCode = 1;
  }
  return tree;
}
