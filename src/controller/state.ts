// The controller's working set: all desired and current state in memory, indexed; the store is its durable copy.
import type { Instance, Node, Project, Version, Workspace } from '../core/model.ts';
import type { StoreSnapshot } from '../store/store.ts';
import type { InstanceReport } from '../core/messages.ts';

/** An instance a node runs that the controller neither asked for nor can adopt: kept running, shown to the operator. */
export interface UnmanagedInstance {
  nodeId: string;
  report: InstanceReport;
}

/**
 * An instance row changed (`instance` is the new row) or went away (`instance` null; `previous` is the last row).
 * Listeners run synchronously inside the change: they must only note it (schedule work), never change state.
 */
export type InstanceListener = (id: string, instance: Instance | null, previous: Instance | null) => void;

export class ControllerState {
  readonly workspaces = new Map<string, Workspace>();
  readonly projects = new Map<string, Project>();
  readonly versions = new Map<string, Version>();
  readonly instances = new Map<string, Instance>();
  readonly nodes = new Map<string, Node>();
  /** instance id → what its node last said of it; forgotten when the node stops reporting it */
  readonly unmanaged = new Map<string, UnmanagedInstance>();
  /** instances placed on a node (desired) or reported by it (current): the plan's "instances on host X" */
  private readonly byNode = new Map<string, Set<string>>();
  private readonly byProject = new Map<string, Set<string>>();
  private readonly instanceListeners = new Set<InstanceListener>();
  /**
   * Instances desired 'stopped' whose nodes are still told 'running' while routers drain requests to them: the row
   * leaves the route table at once, the process only once the drain is over (see the stop job).
   */
  private readonly drainingIds = new Set<string>();

  constructor(snapshot: StoreSnapshot) {
    for (const w of snapshot.workspaces) this.workspaces.set(w.id, w);
    for (const p of snapshot.projects) this.projects.set(p.id, p);
    for (const v of snapshot.versions) this.versions.set(v.id, v);
    for (const n of snapshot.nodes) this.nodes.set(n.id, n);
    for (const i of snapshot.instances) this.putInstance(i);
  }

  workspaceByName(name: string): Workspace | undefined {
    for (const w of this.workspaces.values()) if (w.name === name) return w;
    return undefined;
  }

  projectByName(workspaceId: string, name: string): Project | undefined {
    for (const p of this.projects.values()) if (p.workspaceId === workspaceId && p.name === name) return p;
    return undefined;
  }

  versionsOf(projectId: string): Version[] {
    return [...this.versions.values()].filter((v) => v.projectId === projectId).sort((a, b) => a.number - b.number);
  }

  instancesOf(projectId: string): Instance[] {
    return [...(this.byProject.get(projectId) ?? [])].map((id) => this.instances.get(id)!);
  }

  instancesOnNode(nodeId: string): Instance[] {
    return [...(this.byNode.get(nodeId) ?? [])].map((id) => this.instances.get(id)!);
  }

  /** Tells `listener` of every instance change from now on (jobs waiting for a report, the desired-state publisher). */
  onInstanceChange(listener: InstanceListener): () => void {
    this.instanceListeners.add(listener);
    return () => this.instanceListeners.delete(listener);
  }

  putInstance(i: Instance): void {
    const old = this.instances.get(i.id);
    if (old) this.unindex(old);
    this.instances.set(i.id, i);
    this.index(this.byProject, i.projectId, i.id);
    this.index(this.byNode, i.nodeId, i.id);
    if (i.current && i.current.nodeId !== i.nodeId) this.index(this.byNode, i.current.nodeId, i.id);
    this.emit(i.id, i, old ?? null);
  }

  removeInstance(id: string): void {
    const i = this.instances.get(id);
    if (!i) return;
    this.unindex(i);
    this.instances.delete(id);
    this.emit(id, null, i);
  }

  isDraining(id: string): boolean {
    return this.drainingIds.has(id);
  }

  startDraining(id: string): void {
    this.drainingIds.add(id);
  }

  /** The drain is over: nodes may now be told the instance's real desired state. */
  endDraining(id: string): void {
    if (!this.drainingIds.delete(id)) return;
    const i = this.instances.get(id);
    if (i) this.emit(id, i, i);
  }

  private emit(id: string, instance: Instance | null, previous: Instance | null): void {
    for (const l of [...this.instanceListeners]) l(id, instance, previous);
  }

  removeProject(projectId: string): void {
    for (const i of this.instancesOf(projectId)) this.removeInstance(i.id);
    for (const v of this.versionsOf(projectId)) this.versions.delete(v.id);
    this.projects.delete(projectId);
  }

  private index(map: Map<string, Set<string>>, key: string, id: string): void {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(id);
  }

  private unindex(i: Instance): void {
    this.byProject.get(i.projectId)?.delete(i.id);
    this.byNode.get(i.nodeId)?.delete(i.id);
    if (i.current) this.byNode.get(i.current.nodeId)?.delete(i.id);
  }
}
