// `enjin deploy` of a health-gated rollout: follows its tree until it ends or waits for the operator (canaries up, or a
// batch failed without auto_rollback), saying how to go on; and `enjin deploy --promote` / `--abort`.
import type { EnjinClient, JobTree, RolloutView } from '../../client/client.ts';
import { ROLLOUT_PAUSED, ROLLOUT_WAITING } from '../../core/api.ts';
import { EnjinError } from '../../core/errors.ts';
import { failureSummary } from '../follow-job.ts';
import { globals, print } from '../program.ts';
import { duration, watchTree } from '../render.ts';

/** How a rollout's follow ended: its tree, and the rollout when it is waiting for the operator (null: the tree ended). */
export interface RolloutFollow {
  tree: JobTree;
  waiting: RolloutView | null;
}

const waitingLines = (tree: JobTree): number => {
  const job = tree.children.find((j) => j.kind === 'rollout');
  return (job?.log ?? []).filter((l) => l.startsWith(ROLLOUT_PAUSED) || l.startsWith(ROLLOUT_WAITING)).length;
};

/**
 * Follows the rollout tree `jobId` of `project` until it ends, or until it waits for the operator a time more than
 * `pausesBefore` (the times it had waited when this follow began: a promote follows to the next wait, not the last).
 */
export async function followRollout(c: EnjinClient, project: string, jobId: string, pausesBefore: number): Promise<RolloutFollow> {
  process.once('SIGINT', () => {
    process.stderr.write(`\nthe rollout goes on without this view; follow it with \`enjin jobs show ${jobId} -f\`, or put the previous version back with \`enjin deploy --abort --project ${project}\`\n`);
    process.exit(130);
  });
  let waited = false;
  async function* untilWaiting(updates: AsyncIterable<JobTree>): AsyncGenerator<JobTree> {
    for await (const t of updates) {
      yield t;
      if (t.state === 'running' && waitingLines(t) > pausesBefore) {
        waited = true;
        return;
      }
    }
  }
  let tree: JobTree | null = null;
  const streamed = !globals().json && !process.stderr.isTTY;
  if (globals().json) {
    for await (const t of untilWaiting(c.watchJob(jobId))) tree = t;
    if (!tree) throw new Error(`the job stream of ${jobId} ended early`);
  } else {
    tree = await watchTree(untilWaiting(c.watchJob(jobId)), process.stderr.isTTY ? process.stderr : process.stdout);
  }
  const waiting = waited ? (await c.rollout(project)).rollout : null;
  if (!waiting && tree.state !== 'succeeded') process.stderr.write(failureSummary(tree, { logShown: streamed }));
  return { tree, waiting };
}

/** Prints how a followed rollout stands and sets the exit code: 0 when live or waiting for promotion, else 1. */
export function reportRollout(project: string, followed: RolloutFollow, extra: Record<string, unknown> = {}, opts: { aborted?: boolean } = {}): void {
  const { tree, waiting } = followed;
  const backOnPurpose = opts.aborted && tree.state !== 'succeeded' && /rolled back/.test(tree.error ?? '');
  if ((waiting && waiting.phase !== 'paused') || (!waiting && tree.state !== 'succeeded' && !backOnPurpose)) process.exitCode = 1;
  print({ ...extra, job: tree, rollout: waiting }, () => {
    if (waiting?.phase === 'paused') {
      return [
        `${project} v${waiting.to} canaries are up beside v${waiting.from}, taking their share of traffic; the rollout waits`,
        `  promote: enjin deploy --promote --project ${project}`,
        `  abort:   enjin deploy --abort --project ${project}`,
      ].join('\n');
    }
    if (waiting) {
      return [
        `${project} v${waiting.to} failed its health gate (no auto_rollback): ${waiting.reason ?? 'see the job log'}`,
        `  try the batch again: enjin deploy --promote --project ${project}`,
        `  put v${waiting.from} back: enjin deploy --abort --project ${project}`,
      ].join('\n');
    }
    if (backOnPurpose) return `rollout of ${project} aborted: ${tree.error}`;
    if (tree.state !== 'succeeded') return `rollout of ${project} ${tree.state}`;
    return `${project} is live on the new version in ${duration(tree)}`;
  });
}

/** `enjin deploy --promote|--abort --project P`: acts on the rollout under way and follows it as a deploy does. */
export async function actOnRollout(c: EnjinClient, project: string, act: 'promote' | 'abort'): Promise<void> {
  const res = act === 'promote' ? await c.promoteRollout(project) : await c.abortRollout(project);
  if (!globals().json) process.stderr.write(`${act === 'promote' ? 'promoted' : 'aborting'} the rollout of ${project} (job ${res.job.id})\n`);
  const followed = await followRollout(c, project, res.job.id, res.rollout?.pauses ?? 0);
  reportRollout(project, followed, { project }, { aborted: act === 'abort' });
}

/** The project `--promote`/`--abort` act on without --project: the directory's, else a clear request for --project. */
export function rolloutProject(fromDirectory: () => string): string {
  try {
    return fromDirectory();
  } catch (err) {
    throw new EnjinError('project_required', `--promote and --abort need the project: pass --project NAME (${(err as Error).message})`);
  }
}
