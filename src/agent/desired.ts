// The agent's copy of its desired state: applies what the controller wants (start, or stop when told 'stopped'),
// keeps it on disk and applies it again at start, so a node keeps running what it was told with the controller away.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { DesiredInstance, DesiredStateUpdate, InstanceSpec, Notification, VersionSpec } from '../core/messages.ts';
import { EnjinError } from '../core/errors.ts';
import { componentLogger } from '../log/logger.ts';
import { checkSpec } from './instance-spec.ts';
import { NodeSecrets, type SealedSpec } from './secrets-at-rest.ts';
import { checkId } from './versions.ts';

const log = componentLogger('agent');

/** Instance ids told 'stopped' remembered beyond their rows, so a late, stale message can never start them again. */
const STOPPED_MEMORY = 1000;

/** What applying desired state needs of the agent. */
export interface DesiredStateHost {
  nodeId: string;
  /** where the desired state is kept, e.g. DATA/agent/desired.json */
  path: string;
  /** the supervisor knows (runs, keeps alive, has failed, is stopping) this instance */
  has(instanceId: string): boolean;
  isPrepared(versionId: string): boolean;
  /** fetch + verify + unpack + prepare, refusing a new version while the disk is low */
  prepare(version: VersionSpec): Promise<unknown>;
  start(spec: InstanceSpec): Promise<unknown>;
  stop(instanceId: string): Promise<void>;
  /** the node's report says this instance is gone (it was told to stop one it never had) */
  reportRemoved(instanceId: string): void;
  notify(n: Omit<Notification, 'at' | 'nodeId'>): void;
}

/**
 * format 2: each spec's env sealed (`sealedEnv`) under the node's key, as in the local state; format 1 (earlier agents)
 * had it in clear, and is still read, then written again sealed.
 */
interface DesiredFile {
  format: 1 | 2;
  incarnation: string;
  instances: Array<Omit<DesiredInstance, 'spec'> & { spec: SealedSpec | InstanceSpec }>;
  stopped: string[];
}

export class DesiredState {
  private readonly h: DesiredStateHost;
  /** the env of each spec (config values, secrets) is sealed under the node's key on disk, never written in clear */
  private readonly secrets: NodeSecrets;
  private desired = new Map<string, DesiredInstance>();
  /** ids told 'stopped', oldest first: desired state only ever goes running → stopped, never back */
  private stopped: string[] = [];
  private stoppedSet = new Set<string>();
  private incarnation = '';
  /** one chain of work per instance, so a burst of updates never starts or stops it twice at once */
  private readonly work = new Map<string, Promise<void>>();
  private closed = false;

  constructor(h: DesiredStateHost) {
    this.h = h;
    this.secrets = NodeSecrets.beside(h.path);
  }

  /** What the node was last told, loaded from disk and applied: the controller may be away for a long time. */
  load(): void {
    let text: string;
    try {
      text = readFileSync(this.h.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    let file: DesiredFile;
    try {
      file = JSON.parse(text) as DesiredFile;
    } catch (err) {
      // Not fatal: the running instances are the supervisor's, and the controller sends the desired state again.
      log.error({ err, path: this.h.path }, 'the saved desired state is not valid JSON; ignoring it until the controller sends it again');
      return;
    }
    let opened: DesiredInstance[];
    let plain = false;
    try {
      opened = (Array.isArray(file.instances) ? file.instances : []).map((d) => {
        const o = this.secrets.openSpec(d?.spec, this.h.path);
        plain ||= o.plain;
        return { ...d, spec: o.spec };
      });
    } catch (err) {
      // As for a file that is not JSON: the controller sends the desired state again, with the environments.
      log.error({ err, path: this.h.path }, 'the saved desired state cannot be opened; ignoring it until the controller sends it again');
      return;
    }
    this.incarnation = typeof file.incarnation === 'string' ? file.incarnation : '';
    for (const id of Array.isArray(file.stopped) ? file.stopped : []) this.rememberStopped(id);
    this.desired = new Map();
    for (const d of opened) {
      const id = this.idOf(d);
      if (id) this.desired.set(id, d);
    }
    // Written by an earlier agent with env in clear: sealed now.
    if (plain) this.save();
    log.info({ nodeId: this.h.nodeId, instances: this.desired.size }, 'applying the saved desired state');
    for (const id of this.desired.keys()) this.schedule(id);
  }

  /** seq 0: the whole desired state. Omitted instances are not stopped: they keep running and are reported. */
  full(u: DesiredStateUpdate): void {
    const next = new Map<string, DesiredInstance>();
    for (const d of u.instances) {
      const id = this.idOf(d);
      if (id) next.set(id, d);
    }
    this.desired = next;
    this.incarnation = u.incarnation;
    for (const id of next.keys()) this.note(id);
    this.save();
    for (const id of next.keys()) this.schedule(id);
  }

  /** seq n+1: changed instances; `removed` rows only leave the copy (forgotten rows are never stopped for that). */
  delta(u: DesiredStateUpdate): void {
    const changed: string[] = [];
    for (const d of u.instances) {
      const id = this.idOf(d);
      if (!id) continue;
      this.desired.set(id, d);
      this.note(id);
      changed.push(id);
    }
    for (const id of u.removed) this.desired.delete(id);
    if (changed.length || u.removed.length) this.save();
    for (const id of changed) this.schedule(id);
  }

  /** The instances the node should run, as last told (for reports and tests). */
  get instances(): DesiredInstance[] {
    return [...this.desired.values()];
  }

  /** No new work from now on; resolves when the work under way has ended. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.work.values()]);
  }

  private idOf(d: DesiredInstance): string | null {
    try {
      checkSpec(d?.spec);
      checkId('version', d.version?.versionId);
      if (d.desired !== 'running' && d.desired !== 'stopped') throw new EnjinError('invalid_request', `desired must be running or stopped, not ${String(d.desired)}`, { status: 400 });
      return d.spec.instanceId;
    } catch (err) {
      log.warn({ err, nodeId: this.h.nodeId }, 'ignored a desired instance the agent cannot use');
      return null;
    }
  }

  /** A 'stopped' is remembered for good; a stale 'running' for an id once stopped is read as 'stopped'. */
  private note(id: string): void {
    const d = this.desired.get(id);
    if (d?.desired === 'stopped') this.rememberStopped(id);
    else if (d && this.stoppedSet.has(id)) this.desired.set(id, { ...d, desired: 'stopped' });
  }

  private rememberStopped(id: string): void {
    if (typeof id !== 'string' || this.stoppedSet.has(id)) return;
    this.stopped.push(id);
    this.stoppedSet.add(id);
    while (this.stopped.length > STOPPED_MEMORY) this.stoppedSet.delete(this.stopped.shift()!);
  }

  private schedule(id: string): void {
    if (this.closed) return;
    const prev = this.work.get(id) ?? Promise.resolve();
    const next = prev.then(() => this.apply(id)).catch((err: unknown) => {
      log.warn({ err, nodeId: this.h.nodeId, instanceId: id }, 'applying the desired state of an instance failed; the next update or resync tries again');
    });
    this.work.set(id, next);
    void next.finally(() => {
      if (this.work.get(id) === next) this.work.delete(id);
    });
  }

  /** Brings one instance to what is desired now (read when the work runs, so queued work never acts on old news). */
  private async apply(id: string): Promise<void> {
    if (this.closed) return;
    const d = this.desired.get(id);
    if (this.stoppedSet.has(id)) {
      if (this.h.has(id)) await this.h.stop(id);
      else this.h.reportRemoved(id);
      return;
    }
    // Not in the copy (the controller forgot the row): nothing to do, whatever runs keeps running.
    if (!d || d.desired !== 'running') return;
    // Known to the supervisor: it keeps it alive, or it failed and the controller decides what happens next.
    if (this.h.has(id)) return;
    if (!this.h.isPrepared(d.version.versionId)) {
      try {
        await this.h.prepare(d.version);
      } catch (err) {
        const message = `instance ${id} cannot start: preparing version ${d.version.versionId} failed (${(err as Error).message})`;
        log.warn({ err, nodeId: this.h.nodeId, instanceId: id }, message);
        this.h.notify({ kind: 'instance-failed', instanceId: id, project: d.spec.project, service: d.spec.service, message });
        return;
      }
      // The preparation took time: the instance may have been told to stop, or forgotten, meanwhile.
      const now = this.desired.get(id);
      if (this.closed || !now || now.desired !== 'running' || this.stoppedSet.has(id) || this.h.has(id)) return;
    }
    try {
      await this.h.start(d.spec);
    } catch (err) {
      // The supervisor reports the failure in the node's state (the controller's start job reads it there).
      log.warn({ err, nodeId: this.h.nodeId, instanceId: id }, 'a desired instance failed to start');
    }
  }

  /** Temp file then rename, so the file is always whole. A failed write is logged: memory still holds the state. */
  private save(): void {
    const tmp = `${this.h.path}.tmp`;
    try {
      // Sealing makes the node's key on first use: a failure to make it writes nothing, never the env in clear.
      const instances = [...this.desired.values()].map((d) => ({ ...d, spec: this.secrets.sealSpec(d.spec) }));
      const body: DesiredFile = { format: 2, incarnation: this.incarnation, instances, stopped: this.stopped };
      // It holds the package download token: the agent's alone.
      writeFileSync(tmp, JSON.stringify(body), { mode: 0o600 });
      renameSync(tmp, this.h.path);
    } catch (err) {
      log.error({ err, path: this.h.path }, 'could not save the desired state; a restart before the next save would apply an older one');
    }
  }
}
