// Why an instance did not pass its readiness gate, in words a user can act on: it exited (how), it ignores $PORT
// (and what it listens on instead), or it listens but does not answer.
import type { Driver } from './drivers/driver.ts';
import { listeningSockets, notListeningReason } from './listening-ports.ts';
import { describeExit, type Managed, type Run } from './supervised-instance.ts';

/**
 * The reason a run was not ready ('exited' or 'timeout'). Asked while the run's processes still exist: what they
 * listen on is read from /proc before they are killed.
 */
export async function whyNotReady(m: Managed, run: Run, outcome: 'exited' | 'timeout', driver: Driver): Promise<string> {
  const spec = m.spec;
  if (outcome === 'exited') return `it ${describeExit(run.exit!)} before it was ready`;
  if (!spec.listens || m.port === null) return 'it did not stay up';
  const sockets = listeningSockets(await driver.processes(run.handle).catch(() => []));
  const elsewhere = notListeningReason(sockets, m.port);
  if (elsewhere !== null) return `it was not ready within ${spec.startTimeout} s: ${elsewhere}`;
  // The last probe of the gate says what it saw (HTTP 503 from /healthz, connection refused, the command's output).
  const last = m.probe && !m.probe.ok ? m.probe.output : `nothing accepted connections on port ${m.port}`;
  return `it was not ready within ${spec.startTimeout} s (${last})`;
}
