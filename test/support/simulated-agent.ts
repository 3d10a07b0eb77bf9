// A simulated agent for controller tests: it speaks the agent's side of the bus (state exchange, resyncs, RPCs and
// the desired-state stream) and "runs" instances as entries in a map, so many nodes fit in one test process.
// disconnect() is a partition: the node hears nothing and says nothing, and its instances keep running.
import { randomUUID } from 'node:crypto';
import type { Bus, Subscription } from '../../src/bus/bus.ts';
import type { InstanceHealth, NodeVolume, ProbeResult } from '../../src/core/model.ts';
import { subjects, type AgentReply, type AgentRequest, type InstanceReport, type InstanceSpec, type NodeStateUpdate } from '../../src/core/messages.ts';

/** The controller → agent desired-state stream (src/sync/desired-state.ts): only the parts this agent acts on. */
interface DesiredUpdate {
  instances?: Array<{ spec: InstanceSpec; desired: 'running' | 'stopped' }>;
}

export class SimulatedAgent {
  /** what the node runs, by instance id */
  readonly running = new Map<string, InstanceReport>();
  /** 'start ID' and 'stop ID', in the order they happened */
  readonly events: string[] = [];
  /** volumes the node holds: made when an instance that uses one starts, as a real agent does */
  readonly volumes: NodeVolume[] = [];
  /** the health an instance reports once started (null: none, as agents before health checks); see setHealth */
  healthOnStart: ((spec: InstanceSpec) => InstanceHealth) | null = null;
  private incarnation = randomUUID();
  private seq = 0;
  private subs: Subscription[] = [];
  private nextPort: number;

  constructor(private readonly bus: Bus, readonly nodeId: string, readonly name = nodeId, firstPort = 40_000) {
    this.nextPort = firstPort;
  }

  get connected(): boolean {
    return this.subs.length > 0;
  }

  /** Joins (or rejoins after a partition): answers the controller again and sends a full state. */
  connect(): void {
    if (this.connected) return;
    this.subs.push(
      this.bus.handle(subjects.agentRpc(this.nodeId), (data) => this.rpc(data as AgentRequest)),
      this.bus.subscribe(subjects.resync(this.nodeId), () => this.publishFull()),
      this.bus.subscribe(`enjin.desired.${this.nodeId}`, (m) => this.desired(m.data as DesiredUpdate)),
    );
    this.publishFull();
    this.bus.publish('enjin.desired.resync', { nodeId: this.nodeId });
  }

  /** A partition: nothing reaches the node, nothing leaves it; its instances keep running. */
  disconnect(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
  }

  /** The empty update agents send every 15 s. */
  heartbeat(): void {
    this.publish([], []);
  }

  /** Runs an instance the controller never asked this node for (a lost store, a project destroyed while away). */
  runForeign(report: Omit<InstanceReport, 'current'>): InstanceReport {
    const r = this.report(report);
    this.running.set(r.instanceId, r);
    this.publish([r], []);
    return r;
  }

  /** Reports a new health (and probe result) for a running instance, as a real agent's probes would. */
  setHealth(instanceId: string, health: InstanceHealth, probe: ProbeResult | null = null): void {
    const r = this.running.get(instanceId);
    if (!r) throw new Error(`${this.name} runs no instance ${instanceId}`);
    r.current = { ...r.current, health, probe, reportedAt: new Date().toISOString() };
    this.publish([r], []);
  }

  /** Stops an instance on the node's own account (an operator on the host) and reports it gone. */
  forget(instanceId: string): void {
    this.running.delete(instanceId);
    this.publish([], [instanceId]);
  }

  private report(r: Omit<InstanceReport, 'current'>): InstanceReport {
    const at = new Date().toISOString();
    return { ...r, current: { state: 'running', nodeId: this.nodeId, pid: 10_000 + this.nextPort, host: '127.0.0.1', port: this.nextPort++, restarts: 0, lastExit: null, message: null, reportedAt: at } };
  }

  private start(spec: InstanceSpec): InstanceReport {
    const known = this.running.get(spec.instanceId);
    if (known) return known;
    for (const name of Object.keys(spec.volumes ?? {})) {
      if (!this.volumes.some((v) => v.project === spec.project && v.name === name)) {
        this.volumes.push({ workspace: spec.workspace, project: spec.project, name, dir: `/sim/${this.nodeId}/${spec.project}/${name}`, sizeBytes: 0, measuredAt: null });
      }
    }
    const r = this.report({ instanceId: spec.instanceId, service: spec.service, project: spec.project, versionId: spec.versionId, desired: 'running' });
    if (this.healthOnStart) r.current.health = this.healthOnStart(spec);
    this.running.set(r.instanceId, r);
    this.events.push(`start ${r.instanceId}`);
    this.publish([r], []);
    return r;
  }

  private stop(id: string): void {
    if (!this.running.delete(id)) return;
    this.events.push(`stop ${id}`);
    this.publish([], [id]);
  }

  private async rpc(req: AgentRequest): Promise<AgentReply> {
    switch (req.op) {
      case 'prepare': return { op: 'prepare', ok: true, log: '' };
      case 'start': return { op: 'start', ok: true, report: this.start(req.instance) };
      case 'stop': this.stop(req.instanceId); return { op: 'stop', ok: true };
      case 'logs': return { op: 'logs', ok: true, data: '', offset: 0, size: 0 };
      case 'prepare-log': return { op: 'prepare-log', ok: true, log: '', offset: 0 };
      case 'cancel-prepare': return { op: 'cancel-prepare', ok: true, cancelled: false };
      case 'gc': return { op: 'gc', ok: true, removed: [] };
      // A simulated node keeps nothing on disk to recover from.
      case 'release':
        return { op: 'release', ok: true, log: '' };
      case 'volumes': return { op: 'volumes', ok: true, volumes: this.volumes };
      case 'drop-volumes': return { op: 'drop-volumes', ok: true, removed: [] };
      case 'inventory':
      case 'version-manifest':
      case 'run':
        throw new Error(`a simulated agent has no ${req.op}`);
    }
  }

  /** Stops only what it is told to stop; an instance missing from the controller's word keeps running. */
  private desired(update: DesiredUpdate): void {
    for (const d of update.instances ?? []) {
      if (d.desired === 'running') this.start(d.spec);
      else this.stop(d.spec.instanceId);
    }
  }

  private publishFull(): void {
    this.seq = 0;
    const update: NodeStateUpdate = { node: this.info(), incarnation: this.incarnation, seq: 0, instances: [...this.running.values()], removed: [] };
    this.bus.publish(subjects.nodeState(this.nodeId), update);
  }

  private publish(instances: InstanceReport[], removed: string[]): void {
    if (!this.connected) return;
    const update: NodeStateUpdate = { node: this.info(), incarnation: this.incarnation, seq: ++this.seq, instances, removed };
    this.bus.publish(subjects.nodeState(this.nodeId), update);
  }

  private info() {
    return { nodeId: this.nodeId, name: this.name, address: '127.0.0.1', labels: { sim: 'yes' }, ...(this.volumes.length ? { volumes: this.volumes } : {}) };
  }

}
