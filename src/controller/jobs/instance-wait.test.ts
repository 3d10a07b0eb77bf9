// Jobs wait on the controller's state, which only nodes' reports change: running ends a start, failed fails it,
// the row's removal ends a stop; timeouts and aborts end any wait. Rows are changed here as node-reports.ts does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnjinError } from '../../core/errors.ts';
import type { Instance, InstanceCurrent } from '../../core/model.ts';
import { ControllerState } from '../state.ts';
import { reportedRemoved, reportedRunning, waitForInstance } from './instance-wait.ts';

const emptySnapshot = { workspaces: [], projects: [], versions: [], instances: [], nodes: [], unfinishedJobs: [] };

const row = (id: string, current: InstanceCurrent | null = null): Instance => ({
  id, workspaceId: 'ws', projectId: 'prj', service: 'web', versionId: 'ver', nodeId: 'n1', desired: 'running', createdAt: new Date().toISOString(), current,
});

const reported = (state: InstanceCurrent['state'], nodeId = 'n1', message: string | null = null): InstanceCurrent => ({
  state, nodeId, pid: 42, host: '127.0.0.1', port: 20000, restarts: 0, lastExit: null, message, reportedAt: new Date().toISOString(),
});

const never = () => new Error('timed out');

test('a start waits for the report from its own node that the instance runs', async () => {
  const state = new ControllerState(emptySnapshot);
  state.putInstance(row('i1'));
  let done = false;
  const wait = waitForInstance(state, 'i1', reportedRunning('n1'), { timeoutMs: 60_000, onTimeout: never }).then(() => (done = true));
  state.putInstance(row('i1', reported('starting')));
  state.putInstance(row('i1', reported('running', 'n2'))); // another node's word about it does not count
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  state.putInstance(row('i1', reported('running')));
  await wait;
  // Already running when the wait begins: done at once.
  await waitForInstance(state, 'i1', reportedRunning('n1'), { timeoutMs: 60_000, onTimeout: never });
});

test('a start fails with the node\'s reason, when told to stop, when the row goes, on timeout and on abort', async () => {
  const state = new ControllerState(emptySnapshot);
  state.putInstance(row('i1'));
  const failed = waitForInstance(state, 'i1', reportedRunning('n1'), { timeoutMs: 60_000, onTimeout: never });
  state.putInstance(row('i1', reported('failed', 'n1', 'exit code 3 before it was ready')));
  await assert.rejects(failed, (e: EnjinError) => e.code === 'instance_start_failed' && /exit code 3/.test(e.message));

  state.putInstance(row('i2'));
  const stopped = waitForInstance(state, 'i2', reportedRunning('n1'), { timeoutMs: 60_000, onTimeout: never });
  state.putInstance({ ...row('i2'), desired: 'stopped' });
  await assert.rejects(stopped, (e: EnjinError) => e.code === 'instance_stopped');

  state.putInstance(row('i3'));
  const gone = waitForInstance(state, 'i3', reportedRunning('n1'), { timeoutMs: 60_000, onTimeout: never });
  state.removeInstance('i3');
  await assert.rejects(gone, (e: EnjinError) => e.code === 'instance_stopped');

  state.putInstance(row('i4'));
  await assert.rejects(waitForInstance(state, 'i4', reportedRunning('n1'), { timeoutMs: 10, onTimeout: () => new Error('not reported in time') }), /not reported in time/);

  const abort = new AbortController();
  const aborted = waitForInstance(state, 'i4', reportedRunning('n1'), { timeoutMs: 60_000, signal: abort.signal, onTimeout: never });
  abort.abort(new Error('aborted by the user'));
  await assert.rejects(aborted, /aborted by the user/);
});

test('a stop waits for the row to go; when its node is away the timeout may call the tombstone the outcome', async () => {
  const state = new ControllerState(emptySnapshot);
  state.putInstance({ ...row('i1', reported('running')), desired: 'stopped' });
  let done = false;
  const wait = waitForInstance(state, 'i1', reportedRemoved, { timeoutMs: 60_000, onTimeout: never }).then(() => (done = true));
  state.putInstance({ ...row('i1', reported('stopping')), desired: 'stopped' });
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  state.removeInstance('i1');
  await wait;

  state.putInstance({ ...row('i2', reported('running')), desired: 'stopped' });
  await waitForInstance(state, 'i2', reportedRemoved, { timeoutMs: 10, onTimeout: () => 'done' });
  assert.ok(state.instances.has('i2'), 'the tombstone stays');
});
