// The shapes the job engine runs (a tree's spec, an action and its context) and the nesting of a tree for views.
import { notFound } from '../../core/errors.ts';
import type { JobTreeView } from '../../core/api.ts';
import type { Job, JobTags } from '../../core/model.ts';

export interface JobSpec {
  kind: string;
  title: string;
  tags?: JobTags;
  params?: Record<string, unknown>;
  children?: JobSpec[];
}

export interface JobContext {
  job: Job;
  /** appends a line to the job's log */
  log(line: string): void;
  /** aborted when the tree fails or a user aborts it */
  signal: AbortSignal;
  /** params of the tree's root, e.g. what the whole deploy is about */
  root: Job;
}

export type JobAction = (ctx: JobContext) => Promise<void>;

/** Called once a tree has reached a terminal state (after its jobs are all terminal). */
export type TreeFinished = (root: Job, jobs: Job[]) => Promise<void> | void;

/** The jobs of one tree, nested under their parents in sibling order; `logs`: each job's log, when asked for. */
export function nestTree(jobs: Job[], rootId: string, logs: Map<string, string[]> | null): JobTreeView {
  const views = new Map<string, JobTreeView>(jobs.map((j) => [j.id, { ...j, ...(logs ? { log: logs.get(j.id) ?? [] } : {}), children: [] }]));
  let root: JobTreeView | undefined;
  for (const v of views.values()) {
    if (v.parentId && views.has(v.parentId)) views.get(v.parentId)!.children.push(v);
    else if (v.id === rootId) root = v;
  }
  for (const v of views.values()) v.children.sort((a, b) => a.position - b.position);
  if (!root) throw notFound(`job tree ${rootId}`);
  return root;
}
