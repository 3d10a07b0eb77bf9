// Draws job trees for people: a tree with state marks and durations, redrawn in place on a terminal, or printed as
// one line per change when output is a pipe or a file.
import type { JobTree } from '../client/client.ts';

const MARK: Record<string, string> = { queued: '…', waiting: '·', running: '◐', succeeded: '✓', failed: '✗', aborted: '⊘' };
const SPIN = ['◐', '◓', '◑', '◒'];
const color = (code: number, s: string, on: boolean) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);
const STATE_COLOR: Record<string, number> = { queued: 90, running: 36, succeeded: 32, failed: 31, aborted: 33, waiting: 90 };

/** How long a job took; for a root, the whole tree (from its creation: a root runs last). */
export function duration(job: { startedAt: string | null; finishedAt: string | null; createdAt?: string; parentId?: string | null }, now = Date.now()): string {
  const from = job.parentId === null && job.createdAt ? job.createdAt : job.startedAt;
  if (!from) return '';
  const ms = (job.finishedAt ? Date.parse(job.finishedAt) : now) - Date.parse(from);
  return ms < 1000 ? `${ms}ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

/** The tree as lines: root first, each child indented under its parent. */
export function treeLines(root: JobTree, opts: { color?: boolean; frame?: number; logTail?: number; width?: number; errors?: boolean } = {}): string[] {
  const lines: string[] = [];
  const walk = (j: JobTree, prefix: string, childPrefix: string) => {
    const mark = j.state === 'running' ? SPIN[(opts.frame ?? 0) % SPIN.length] : MARK[j.state] ?? '?';
    const d = duration(j);
    const head = `${prefix}${color(STATE_COLOR[j.state] ?? 0, mark, !!opts.color)} ${j.title}`;
    const tail = `${j.state}${d ? ` ${d}` : ''}`;
    lines.push(`${head}  ${color(90, tail, !!opts.color)}`);
    if (opts.errors !== false && j.error && j.state === 'failed') lines.push(`${childPrefix}   ${color(31, j.error, !!opts.color)}`);
    if (opts.logTail && j.state === 'running' && j.log?.length) {
      for (const l of j.log.slice(-opts.logTail)) lines.push(`${childPrefix}   ${color(90, truncate(l, (opts.width ?? 120) - childPrefix.length - 3), !!opts.color)}`);
    }
    j.children.forEach((c, k) => {
      const last = k === j.children.length - 1;
      walk(c, `${childPrefix}${last ? '└─ ' : '├─ '}`, `${childPrefix}${last ? '   ' : '│  '}`);
    });
  };
  walk(root, '', '');
  return lines;
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, Math.max(0, n - 1))}…` : s;
}

/** Children before their parent: the order in which a tree's jobs run. */
export function runOrder(root: JobTree): JobTree[] {
  const out: JobTree[] = [];
  const walk = (j: JobTree) => { j.children.forEach(walk); out.push(j); };
  walk(root);
  return out;
}

export function flatten(root: JobTree): JobTree[] {
  const out: JobTree[] = [];
  const walk = (j: JobTree) => { out.push(j); j.children.forEach(walk); };
  walk(root);
  return out;
}

/**
 * A line the engine adds to a job's log when it ends ("failed: REASON", "aborted: REASON"): the reason is shown
 * once, by the failure summary, so the live view leaves these out.
 */
export function isEndingLine(j: JobTree, line: string): boolean {
  return j.error !== null && j.error !== undefined && (line === `failed: ${j.error}` || line === `aborted: ${j.error}`);
}

/** The failed jobs a summary explains: those that failed themselves, not the root that failed because of them. */
export function failedJobs(root: JobTree): JobTree[] {
  return flatten(root).filter((j) => j.state === 'failed' && j.id !== root.id);
}

/**
 * Draws a tree as its updates arrive, until it ends; returns the final tree. A failure's reason is not drawn here:
 * the caller's summary says it once, with the log that explains it (see follow-job.ts).
 */
export async function watchTree(updates: AsyncIterable<JobTree>, out: NodeJS.WriteStream): Promise<JobTree> {
  const tty = !!out.isTTY;
  let drawn = 0;
  let frame = 0;
  const seenState = new Map<string, string>();
  const seenLog = new Map<string, number>();
  let last: JobTree | null = null;
  let lastDraw = 0;
  let spinner: NodeJS.Timeout | null = null;
  const draw = (tree: JobTree, done: boolean) => {
    if (tty) {
      const lines = treeLines(tree, { color: true, frame: frame++, logTail: done ? 0 : 2, width: out.columns ?? 120, errors: false });
      if (drawn) out.write(`\x1b[${drawn}A`);
      out.write(lines.map((l) => `\x1b[2K${l}`).join('\n') + '\n');
      if (drawn > lines.length) out.write('\x1b[J');
      drawn = lines.length;
    } else {
      for (const j of runOrder(tree)) {
        const logs = j.log ?? [];
        for (const l of logs.slice(seenLog.get(j.id) ?? 0)) if (!isEndingLine(j, l)) out.write(`  ${j.title} | ${l}\n`);
        seenLog.set(j.id, logs.length);
        if (seenState.get(j.id) !== j.state && j.state !== 'waiting') {
          const d = duration(j);
          out.write(`${MARK[j.state]} ${j.title}: ${j.state}${d && j.state !== 'running' ? ` in ${d}` : ''}\n`);
        }
        seenState.set(j.id, j.state);
      }
    }
  };
  try {
    // On a terminal the spinner keeps turning between updates; redraws are held to ten a second.
    if (tty) spinner = setInterval(() => { if (last) draw(last, false); }, 200);
    for await (const tree of updates) {
      last = tree;
      const done = ['succeeded', 'failed', 'aborted'].includes(tree.state);
      if (!done && tty && Date.now() - lastDraw < 100) continue;
      lastDraw = Date.now();
      draw(tree, done);
      if (done) return tree;
    }
  } finally {
    if (spinner) clearInterval(spinner);
  }
  if (!last) throw new Error('the job stream ended before it sent the tree');
  return last;
}
