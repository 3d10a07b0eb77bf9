// What the supervisor knows of one instance and of each process it runs, and how that reads in a report.
import type { InstanceReport, InstanceSpec, Notification } from '../core/messages.ts';
import type { InstanceCurrent, InstanceHealth, InstanceState, ProbeResult } from '../core/model.ts';
import type { TaskExit, TaskHandle } from './drivers/driver.ts';
import type { InstanceMode } from './local-state.ts';
import type { RestartHistory } from './restart-policy.ts';

/** One spawned process of an instance. */
export interface Run {
  handle: TaskHandle;
  startedAt: number;
  exit: TaskExit | null;
  exited: Promise<TaskExit>;
  /** stops watching the process (it is stopped, or left running for the next agent) */
  unwatch: AbortController;
}

export interface Managed {
  spec: InstanceSpec;
  mode: InstanceMode;
  state: InstanceState;
  port: number | null;
  restarts: number;
  lastExit: InstanceCurrent['lastExit'];
  message: string | null;
  run: Run | null;
  /** bumped whenever the agent changes course (stop, shutdown): async work of an older generation gives up */
  gen: number;
  cancel: AbortController;
  /** the restarts within the policy's window and the failed runs in a row (the backoff delay) */
  history: RestartHistory;
  /** a pending restart (backoff) */
  timer: NodeJS.Timeout | null;
  /** what the health check says of the current run; 'none' without a check */
  health: InstanceHealth;
  /** the last probe (readiness gate or health check) of the current or last run */
  probe: ProbeResult | null;
  /** the next health probe */
  probeTimer: NodeJS.Timeout | null;
  /** the start (or restart) under way */
  launching: Promise<void> | null;
  stopping: Promise<void> | null;
}

/** A new record for an instance the agent has not run yet (or takes back from its state file: `over`). */
export function newManaged(spec: InstanceSpec, over: Partial<Managed> = {}): Managed {
  return {
    spec, mode: 'run', state: 'pending', port: null, restarts: 0, lastExit: null, message: null, run: null, gen: 0,
    cancel: new AbortController(), history: { attempts: [], streak: 0 }, timer: null, health: 'none', probe: null, probeTimer: null,
    launching: null, stopping: null, ...over,
  };
}

/** Tells the controller (and the user) about an instance; the agent adds the node and the time. */
export type Notify = (n: Omit<Notification, 'at' | 'nodeId'>) => void;

/** A requested start ('rpc') fails for its caller; a restart the agent does by itself backs off instead. */
export type Kind = 'rpc' | 'restart';

export function toReport(m: Managed, nodeId: string, address: string): InstanceReport {
  return {
    instanceId: m.spec.instanceId,
    service: m.spec.service,
    project: m.spec.project,
    versionId: m.spec.versionId,
    desired: m.mode === 'stopping' ? 'stopped' : 'running',
    current: {
      state: m.state,
      nodeId,
      pid: m.run?.handle.pid ?? null,
      host: m.port === null ? null : address,
      port: m.port,
      restarts: m.restarts,
      lastExit: m.lastExit,
      message: m.message,
      // Health speaks of a process: an instance with none (exited, backing off, finished) has none to tell.
      health: m.state === 'running' || m.state === 'starting' ? m.health : 'none',
      probe: m.probe,
      reportedAt: new Date().toISOString(),
    },
  };
}

export function describeExit(exit: TaskExit): string {
  const how = exit.signal ? `was killed by ${exit.signal}` : exit.code === null ? 'exited' : `exited with code ${exit.code}`;
  // The kernel may have killed a child (the shell then exits 137): say why either way.
  return exit.oomKilled ? `${how}: out of memory (the kernel killed a process of it over the instance's memory limit)` : how;
}
