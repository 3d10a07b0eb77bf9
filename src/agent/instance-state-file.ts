// The supervisor's record of its instances on the node's disk, and what a failure to write it means.
import { EnjinError } from '../core/errors.ts';
import { loadLocalState, saveLocalState, type PersistedInstance } from './local-state.ts';
import type { Managed, Notify } from './supervised-instance.ts';

export class InstanceStateFile {
  private readonly path: string;
  private readonly nodeId: string;
  private readonly notify: Notify;
  /** why the last write of the local state failed (disk full, read-only): null once a write succeeds again */
  private error: NodeJS.ErrnoException | null = null;

  constructor(path: string, nodeId: string, notify: Notify) {
    this.path = path;
    this.nodeId = nodeId;
    this.notify = notify;
  }

  load(): PersistedInstance[] {
    return loadLocalState(this.path);
  }

  /** The reason nothing may start now (the last write failed), or null. */
  unwritable(): EnjinError | null {
    return this.error ? this.unwritableError(this.error) : null;
  }

  /**
   * Writes the local state. A failure (disk full) is reported, not thrown: the change stands in memory, the
   * controller still hears of it, and the next change writes everything again. Starts wait until a write succeeds.
   */
  save(instances: Iterable<Managed>): void {
    try {
      this.write(instances);
      if (this.error) this.notify({ kind: 'info', message: `the agent on node ${this.nodeId} can write its state again` });
      this.error = null;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (this.error?.code !== e.code) this.notify({ kind: 'info', message: `${this.unwritableError(e).message}` });
      this.error = e;
    }
  }

  private unwritableError(err: NodeJS.ErrnoException): EnjinError {
    const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
    return new EnjinError(full ? 'node_disk_full' : 'agent_state_unwritable', `the agent on node ${this.nodeId} cannot record its instances (${err.code ?? 'error'}: ${err.message})${full ? '; free space on the node' : '; check its data directory'}, and starts nothing until it can`, { status: 507 });
  }

  private write(instances: Iterable<Managed>): void {
    const records: PersistedInstance[] = [...instances].map((m) => ({
      spec: m.spec,
      mode: m.mode,
      state: m.state,
      handle: m.run?.handle ?? null,
      port: m.port,
      restarts: m.restarts,
      lastExit: m.lastExit,
      message: m.message,
    }));
    saveLocalState(this.path, records);
  }
}
