// What a command says of a change that waits in its project's queue.
import type { QueuedJobView } from '../core/api.ts';
import { globals } from './program.ts';

/** "queued behind job_x (position 2)"; null when the job is not queued. */
export function queueText(job: QueuedJobView): string | null {
  if (job.state !== 'queued') return null;
  const place = job.queue;
  if (!place) return 'queued';
  return `queued${place.behind ? ` behind ${place.behind}` : ''} (position ${place.position})`;
}

/** Tells a person at the terminal (stderr) that the change waits, and that it is followed once it starts. */
export function sayQueued(job: QueuedJobView, following: boolean): void {
  const text = queueText(job);
  if (!text || globals().json) return;
  process.stderr.write(`${job.title}: ${text}${following ? '; following it when it starts' : ''}\n`);
}
