// The agent's own durable state: which instances it keeps alive and the processes behind them, so a restarted agent re-adopts instead of restarting.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { EnjinError } from '../core/errors.ts';
import type { InstanceSpec } from '../core/messages.ts';
import type { InstanceCurrent, InstanceHealth, InstanceState, ProbeResult } from '../core/model.ts';
import type { TaskHandle } from './drivers/driver.ts';
import type { NodeSecrets, SealedSpec } from './secrets-at-rest.ts';

/**
 * What the agent was last doing with an instance:
 * - run: keep it alive (restart it when it exits)
 * - failed: its start failed; leave it until told again
 * - shutdown: stopped because the agent shut down; start it again on the next agent start
 * - stopping: being stopped and forgotten; a restarted agent finishes the job
 * - finished: it ended and its restart policy says that is the end (exit 0 under on-failure); leave it until told again
 */
export type InstanceMode = 'run' | 'failed' | 'shutdown' | 'stopping' | 'finished';

export interface PersistedInstance {
  spec: InstanceSpec;
  mode: InstanceMode;
  /** the last state reported, so a re-adopted process that was running is not gated again */
  state: InstanceState;
  handle: TaskHandle | null;
  port: number | null;
  restarts: number;
  lastExit: InstanceCurrent['lastExit'];
  message: string | null;
  /** the health of a running instance and its last probe, so a re-adopted one keeps its routes; absent from older agents */
  health?: InstanceHealth;
  probe?: ProbeResult | null;
}

/**
 * format 2: each spec's env sealed (`sealedEnv`) under the node's key; format 1 (earlier agents) had it in clear, and
 * is still read, then written again sealed.
 */
interface StateFile {
  format: 1 | 2;
  instances: Array<Omit<PersistedInstance, 'spec'> & { spec: SealedSpec | InstanceSpec }>;
}

/** The instances recorded in `path`, and whether any env was in clear there (the file should be written again). */
export function loadLocalState(path: string, secrets: NodeSecrets): { instances: PersistedInstance[]; plain: boolean } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { instances: [], plain: false };
    throw err;
  }
  let parsed: StateFile;
  try {
    parsed = JSON.parse(text) as StateFile;
  } catch (err) {
    // Starting with nothing would start duplicates of instances that still run: refuse, and say where to look.
    throw new EnjinError('agent_state_corrupt', `${path} is not valid JSON (${(err as Error).message}); fix or remove it (removing it forgets the instances this node runs)`, { status: 500 });
  }
  let plain = false;
  const instances = (Array.isArray(parsed.instances) ? parsed.instances : []).map((rec) => {
    // Like a file that is not JSON: an env that cannot be opened would restart instances without their config.
    const opened = secrets.openSpec(rec?.spec, path);
    plain ||= opened.plain;
    return { ...rec, spec: opened.spec };
  });
  return { instances, plain };
}

/**
 * Written synchronously, temp file then rename: the file is always whole, and once a change (a new pid) is made in
 * memory it is on disk before anything else runs, so a kill -9 of the agent cannot lose a process it started.
 */
export function saveLocalState(path: string, instances: PersistedInstance[], secrets: NodeSecrets): void {
  const tmp = `${path}.tmp`;
  const body: StateFile = { format: 2, instances: instances.map((rec) => ({ ...rec, spec: secrets.sealSpec(rec.spec) })) };
  writeFileSync(tmp, JSON.stringify(body, null, 1), { mode: 0o600 });
  renameSync(tmp, path);
}
