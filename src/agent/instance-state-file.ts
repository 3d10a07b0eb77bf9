// The supervisor's record of its instances on the node's disk, and what a failure to write it means.
import { EnjinError } from '../core/errors.ts';
import { componentLogger } from '../log/logger.ts';
import { loadLocalState, saveLocalState, type PersistedInstance } from './local-state.ts';
import { NodeSecrets } from './secrets-at-rest.ts';
import type { Managed, Notify } from './supervised-instance.ts';

const log = componentLogger('agent');

export class InstanceStateFile {
  private readonly path: string;
  /** instances' env is sealed under the node's key in the file, never written in clear */
  private readonly secrets: NodeSecrets;
  private readonly nodeId: string;
  private readonly notify: Notify;
  /** why the last write of the local state failed (disk full, read-only): null once a write succeeds again */
  private error: NodeJS.ErrnoException | null = null;

  constructor(path: string, nodeId: string, notify: Notify) {
    this.path = path;
    this.nodeId = nodeId;
    this.notify = notify;
    this.secrets = NodeSecrets.beside(path);
  }

  load(): PersistedInstance[] {
    const { instances, plain } = loadLocalState(this.path, this.secrets);
    if (plain) {
      // Written by an earlier agent with env in clear: sealed now, not at the next change, which may be far off.
      try {
        saveLocalState(this.path, instances, this.secrets);
        log.info({ nodeId: this.nodeId, path: this.path }, 'sealed the environments an earlier agent had written in clear');
      } catch (err) {
        log.error({ err, nodeId: this.nodeId, path: this.path }, 'could not write the local state again with its environments sealed; the next change tries again');
      }
    }
    return instances;
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
      health: m.health,
      probe: m.probe,
    }));
    saveLocalState(this.path, records, this.secrets);
  }
}
