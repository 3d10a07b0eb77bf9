// The newest jobs in memory, ordered as listings page them, so `GET /v1/jobs` costs no query: the store is asked only
// for pages that reach past the window (old history), and each job's tree and logs are never loaded to list it.
import type { EventEmitter } from 'node:events';
import { invalid } from '../../core/errors.ts';
import type { Job } from '../../core/model.ts';
import type { JobPageView } from '../../core/api.ts';
import { invalidJobCursor, type JobFilter, type Store } from '../../store/store.ts';

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;
/** Jobs kept in memory: about 0.5 KB each, so the default costs a few MB whatever the history. */
export const DEFAULT_WINDOW = 10_000;
/** The store hands out at most this many per query. */
const STORE_PAGE = 500;
const JOB_ID = /^job_[0-9a-z]{1,64}$/;

type JobPage = JobPageView;

/** Newest first: by creation time, then id (ids of one millisecond are ordered too). */
function newerFirst(a: Job, b: Job): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? 1 : -1;
  return a.id === b.id ? 0 : a.id < b.id ? 1 : -1;
}

function matches(job: Job, filter: JobFilter): boolean {
  if (filter.rootsOnly && job.parentId !== null) return false;
  if (filter.states && filter.states.length > 0 && !filter.states.includes(job.state)) return false;
  for (const [tag, value] of Object.entries(filter.tags ?? {})) {
    if (value !== undefined && job.tags[tag as keyof Job['tags']] !== value) return false;
  }
  return true;
}

export class JobIndex {
  readonly #store: Store;
  readonly #window: number;
  /** newest first */
  #jobs: Job[] = [];
  readonly #byId = new Map<string, Job>();
  /** true while the window holds the whole history: then a miss is an answer, not a reason to ask the store */
  #complete = false;
  #loaded = false;
  /** changes seen while loading, applied once the loaded rows are in */
  #early: Job[] = [];

  /** Follows `events` ('change' with the whole job, as JobEngine emits on every insert and transition) from now on. */
  constructor(store: Store, events: EventEmitter, opts: { window?: number } = {}) {
    this.#store = store;
    this.#window = opts.window ?? DEFAULT_WINDOW;
    events.on('change', (job: Job) => (this.#loaded ? this.#apply(job) : this.#early.push({ ...job })));
  }

  /** Reads the newest jobs from the store; until then, listings go to the store. */
  async load(): Promise<void> {
    const rows: Job[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await this.#store.listJobs({ limit: Math.min(STORE_PAGE, this.#window - rows.length), before });
      rows.push(...page);
      if (page.length < STORE_PAGE || rows.length >= this.#window) break;
      before = page[page.length - 1].id;
    }
    this.#complete = rows.length < this.#window;
    this.#jobs = rows;
    for (const j of rows) this.#byId.set(j.id, j);
    this.#loaded = true;
    for (const j of this.#early.splice(0)) this.#apply(j);
  }

  get size(): number {
    return this.#jobs.length;
  }

  /** One page, newest first, with the cursor of the next. Bad limits and cursors are 400s with a code. */
  async list(filter: JobFilter): Promise<JobPage> {
    const limit = filter.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw invalid(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}, not ${limit}`);
    }
    if (filter.before !== undefined && !JOB_ID.test(filter.before)) throw invalidJobCursor(filter.before);
    if (!this.#loaded) return this.#fromStore(filter, limit);

    let from = 0;
    if (filter.before !== undefined) {
      const cursor = this.#byId.get(filter.before);
      if (cursor === undefined) {
        if (this.#complete) throw invalidJobCursor(filter.before);
        return this.#fromStore(filter, limit);
      }
      from = this.#position(cursor) + 1;
    }
    const found: Job[] = [];
    for (let i = from; i < this.#jobs.length; i++) {
      const job = this.#jobs[i];
      if (!matches(job, filter)) continue;
      if (found.length === limit) return { jobs: found, next: found[found.length - 1].id };
      found.push(job);
    }
    // Ran off the window: older matches may only be in the store.
    if (!this.#complete) return this.#fromStore(filter, limit);
    return { jobs: found, next: null };
  }

  async #fromStore(filter: JobFilter, limit: number): Promise<JobPage> {
    // One more than asked tells whether a next page exists (within what the store hands out per query).
    const jobs = await this.#store.listJobs({ ...filter, limit: Math.min(limit + 1, STORE_PAGE) });
    if (jobs.length > limit) return { jobs: jobs.slice(0, limit), next: jobs[limit - 1].id };
    if (jobs.length === STORE_PAGE) return { jobs, next: jobs[jobs.length - 1].id };
    return { jobs, next: null };
  }

  /** Index of `job` in the window (binary search on the listing order). */
  #position(job: Job): number {
    let lo = 0;
    let hi = this.#jobs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (newerFirst(this.#jobs[mid], job) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #apply(job: Job): void {
    const copy = { ...job, tags: { ...job.tags } };
    const known = this.#byId.get(job.id);
    if (known !== undefined) {
      this.#jobs[this.#position(known)] = copy;
      this.#byId.set(job.id, copy);
      return;
    }
    const at = this.#position(copy);
    // Older than everything kept, with older history left out: the store has it, the window does not need it.
    if (at === this.#jobs.length && !this.#complete) return;
    this.#jobs.splice(at, 0, copy);
    this.#byId.set(job.id, copy);
    while (this.#jobs.length > this.#window) {
      this.#byId.delete(this.#jobs.pop()!.id);
      this.#complete = false;
    }
  }
}
