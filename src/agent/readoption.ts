// Re-adoption after an agent restart: what becomes of each instance the previous agent recorded.
import type { InstanceSpec } from '../core/messages.ts';
import type { Driver, TaskHandle } from './drivers/driver.ts';
import type { InstanceLogs } from './instance-logs.ts';
import { checkSpec } from './instance-spec.ts';
import type { PersistedInstance } from './local-state.ts';
import type { PortAllocator } from './ports.ts';
import { newManaged, type Managed, type Notify } from './supervised-instance.ts';

/** What re-adoption needs of the supervisor that takes the instances back. */
export interface ReadoptionTarget {
  driver: Driver;
  logs: InstanceLogs;
  ports: PortAllocator;
  notify: Notify;
  /** puts the instance under supervision */
  add(m: Managed): void;
  /** watches a live process of `m` */
  watch(m: Managed, handle: TaskHandle): void;
  /** takes a live process back, gating it again if it was not ready yet */
  adopt(m: Managed, rec: PersistedInstance): void;
  /** starts the instance again (its failures back off) */
  restart(m: Managed): void;
  stop(instanceId: string): void;
}

/** Re-adopts live processes, restarts dead ones, finishes interrupted stops. */
export async function readopt(records: PersistedInstance[], to: ReadoptionTarget): Promise<void> {
  for (const rec of records) {
    let spec: InstanceSpec;
    try {
      spec = checkSpec(rec.spec);
    } catch {
      continue; // a record we cannot trust is not worth a process
    }
    const m = newManaged(spec, {
      mode: rec.mode, state: rec.state, port: rec.port ?? null, restarts: rec.restarts ?? 0, lastExit: rec.lastExit ?? null,
      message: rec.message ?? null, health: rec.health ?? 'none', probe: rec.probe ?? null,
    });
    to.add(m);
    if (m.port !== null) to.ports.claim(m.port, spec.instanceId);
    const alive = rec.handle ? await to.driver.recover(rec.handle) : false;
    if (alive && rec.mode !== 'failed' && rec.mode !== 'finished') {
      try {
        // Its output waited in the FIFO (or blocked it) while no agent read: carry on reading.
        to.logs.open(spec.instanceId);
      } catch (err) {
        to.notify({ kind: 'info', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `the log of instance ${spec.instanceId} could not be reopened: ${(err as Error).message}` });
      }
    }
    if (rec.mode === 'stopping') {
      // The agent died while stopping it: finish the job.
      if (alive) to.watch(m, rec.handle!);
      else if (rec.handle) void to.driver.destroy(rec.handle).catch(() => {});
      to.stop(spec.instanceId);
    } else if (rec.mode === 'failed' || rec.mode === 'finished') {
      // Done with, one way or the other: it stays so until told to start again.
      m.state = rec.mode;
      if (m.port !== null) to.ports.release(m.port, spec.instanceId);
      m.port = null;
      if (alive) void to.driver.destroy(rec.handle!).catch(() => {});
    } else if (rec.mode === 'shutdown') {
      m.mode = 'run';
      if (alive) {
        to.adopt(m, rec);
      } else {
        to.restart(m);
      }
    } else if (alive) {
      to.adopt(m, rec);
    } else {
      // It died while nobody watched (or the agent died before it was ready): bring it back now.
      if (rec.handle) {
        m.lastExit = { code: null, signal: null, at: new Date().toISOString() };
        m.message = 'exited while the agent was not running';
        to.notify({ kind: 'instance-exited', instanceId: spec.instanceId, project: spec.project, service: spec.service, message: `instance ${spec.instanceId} exited while the agent was not running; restarting it` });
        m.restarts++;
      }
      to.restart(m);
    }
  }
}
