// What a user sees while following a job tree: each failure's reason once, the app's output where it explains it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobTree } from '../client/client.ts';
import { failureSummary } from './follow-job.ts';
import { treeLines, watchTree } from './render.ts';

const REASON = 'web inst_1 failed to start on vm: it exited with code 1 before it was ready';

function job(title: string, state: JobTree['state'], over: Partial<JobTree> = {}): JobTree {
  const now = new Date().toISOString();
  return {
    id: `job_${title.replace(/\W/g, '')}`, rootId: 'job_deploy', parentId: 'job_deploy', kind: 'x', title, state, tags: {}, params: {},
    error: null, createdAt: now, startedAt: now, finishedAt: state === 'running' || state === 'waiting' ? null : now, position: 0, log: [], children: [], ...over,
  };
}

/** A deploy whose start failed: the start's log holds the app's last lines and the engine's own "failed:" line. */
function failedDeploy(): JobTree {
  const start = job('start web on vm', 'failed', {
    error: REASON,
    log: ['last 2 line(s) of the log of web inst_1:', '  booting', '  Error: Cannot find module express', 'stopping the 1 instance(s) this job started', `failed: ${REASON}`],
  });
  const routes = job('switch routes to v1', 'aborted', { error: `start web on vm: ${REASON}`, children: [start] });
  return job('deploy hello v1', 'failed', { id: 'job_deploy', parentId: null, error: `start web on vm: ${REASON}`, children: [routes] });
}

async function* updates(...trees: JobTree[]): AsyncIterable<JobTree> {
  yield* trees;
}

/** A writable that is not a terminal, collecting what is written (what a pipe or a CI log receives). */
function pipe(): NodeJS.WriteStream & { text: string } {
  const out = { isTTY: false, text: '', write(s: string) { out.text += s; return true; } };
  return out as unknown as NodeJS.WriteStream & { text: string };
}

const count = (text: string, s: string) => text.split(s).length - 1;

test('streamed to a pipe: the app output once, no reason on the state lines; the summary adds the reason once', async () => {
  const running = failedDeploy();
  running.state = 'running';
  running.children[0].state = 'waiting';
  running.children[0].children[0] = { ...running.children[0].children[0], state: 'running', error: null, log: running.children[0].children[0].log!.slice(0, 3) };
  const out = pipe();
  await watchTree(updates(running, failedDeploy()), out);
  const all = out.text + failureSummary(failedDeploy(), { logShown: true });
  assert.equal(count(all, 'Cannot find module express'), 1, all);
  assert.equal(count(all, 'exited with code 1'), 1, all);
  assert.match(all, /✗ start web on vm: failed/);
  assert.match(all, /✗ deploy hello v1: failed/);
});

test('on a terminal the summary carries the reason and the log tail, once, without the engine\'s failed line', () => {
  const summary = failureSummary(failedDeploy(), { logShown: false });
  assert.equal(count(summary, 'exited with code 1'), 1, summary);
  assert.match(summary, /start web on vm failed: .*exited with code 1/);
  assert.match(summary, /\n {4}Error: Cannot find module express\n/);
  assert.doesNotMatch(summary, /switch routes|deploy hello/, 'only the job that failed itself is explained');
  // The final tree drawn on the terminal leaves the reasons to the summary; `jobs show` keeps them.
  assert.equal(treeLines(failedDeploy(), { errors: false }).join('\n').includes('exited with code 1'), false);
  assert.equal(treeLines(failedDeploy()).join('\n').includes('exited with code 1'), true);
});
