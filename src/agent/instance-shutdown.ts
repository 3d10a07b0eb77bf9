// The supervisor's part of an agent shutdown: stop every instance (to start again next time), or leave them all
// running for the next agent to re-adopt, exactly as a crash would.
import type { Driver } from './drivers/driver.ts';
import type { InstanceLogs } from './instance-logs.ts';
import type { Managed } from './supervised-instance.ts';

/** What a shutdown needs from the supervisor. */
export interface ShutdownHost {
  driver: Driver;
  logs: InstanceLogs;
  /** cancels what an instance was doing (a readiness wait, a backoff timer) */
  changeCourse(m: Managed): void;
  /** a line from the agent in the instance's own log */
  logLine(m: Managed, line: string): void;
  /** records a change of one instance (disk and controller) */
  touch(m: Managed): void;
  /** writes the state file */
  persist(): void;
}

export async function shutdownInstances(instances: Managed[], stopInstances: boolean, h: ShutdownHost): Promise<void> {
  const stops: Promise<void>[] = [];
  for (const m of instances) {
    h.changeCourse(m);
    const run = m.run;
    if (!stopInstances) {
      run?.unwatch.abort();
      continue;
    }
    if (m.mode !== 'run' && m.mode !== 'shutdown') continue;
    m.mode = 'shutdown';
    if (!run) {
      m.state = 'stopped';
      continue;
    }
    m.state = 'stopping';
    stops.push(
      h.driver.stop(run.handle, { timeoutMs: m.spec.stopTimeout * 1000 }).then(() => {
        run.unwatch.abort();
        m.run = null;
        m.state = 'stopped';
        h.logLine(m, 'stopped (agent shutdown)');
        h.touch(m);
      }),
    );
  }
  h.persist();
  await Promise.all(stops);
  // Stops requested before the shutdown finish as asked.
  await Promise.all(instances.map((m) => m.stopping).filter(Boolean));
  h.persist();
  // Stopped instances' last output is drained; running ones keep theirs in the FIFO for the next agent.
  await h.logs.closeAll(stopInstances);
}
