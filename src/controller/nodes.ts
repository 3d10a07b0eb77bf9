// Node lifecycle on the controller: marking silent nodes down, and the operator's drain, activate and remove.
import { conflict, EnjinError, invalid, notFound } from '../core/errors.ts';
import type { Job, Node, Project } from '../core/model.ts';
import type { Notification } from '../core/messages.ts';
import type { Store } from '../store/store.ts';
import { componentLogger } from '../log/logger.ts';
import type { ControllerState } from './state.ts';

const log = componentLogger('nodes');

export const DEFAULT_NODE_DOWN_AFTER_MS = 30_000;

/** A node as the operator sees it: down wins over draining (a down node can do nothing either way). */
export type NodeState = 'ready' | 'down' | 'draining';

export function nodeState(n: Node): NodeState {
  if (n.status !== 'ready') return 'down';
  return n.draining ? 'draining' : 'ready';
}

/** The parts of the controller node operations use. */
export interface NodeLifecycleHost {
  readonly state: ControllerState;
  readonly store: Store;
  notify(n: Notification): void;
  /** node states changed which instances routers may use */
  refreshRoutes(): void;
  /** closes the gap between desired and current for one project now; null when a tree is already working on it */
  converge(project: Project, kind: 'reconcile', title: string): Promise<Job | null>;
  /** the controller's clock, ms */
  now(): number;
  /** a node silent for longer is down */
  nodeDownAfterMs: number;
}

/** What a drain, an activate or a remove set going, project by project. */
export interface NodeChange {
  node: Node;
  /** trees started to move instances (drain) or replace forgotten ones (remove) */
  jobs: Job[];
  /** projects left for the reconcile loop, and why */
  waiting: Array<{ project: string; reason: string }>;
}

export class NodeLifecycle {
  /** a node's silence is counted from here at the earliest: a controller that just started has heard nobody yet */
  private watchingSince: number;
  /** this controller's own link to the bus is down: silence then says nothing about the nodes */
  private deaf = false;

  constructor(private readonly h: NodeLifecycleHost) {
    this.watchingSince = h.now();
  }

  /**
   * Starts the silence clocks again (a controller starting or taking over the lead): every node gets a full
   * nodeDownAfterMs to speak before it is called down, so a restart never moves instances off healthy nodes.
   */
  watchFromNow(): void {
    this.watchingSince = this.h.now();
  }

  /**
   * The controller lost the bus (its own link, or the NATS servers): nodes keep running and serving, but nothing they
   * say arrives. Nobody is called down for a silence the controller caused; when the bus is back, every node gets a
   * full nodeDownAfterMs again (its resync normally answers at once).
   */
  busLost(): void {
    this.deaf = true;
  }

  busBack(): void {
    this.deaf = false;
    this.watchFromNow();
  }

  /** By id, else by name; an ambiguous name is refused rather than guessed. */
  find(ref: string): Node {
    const byId = this.h.state.nodes.get(ref);
    if (byId) return byId;
    const named = [...this.h.state.nodes.values()].filter((n) => n.name === ref);
    if (named.length === 1) return named[0];
    if (named.length > 1) throw invalid(`${named.length} nodes are named ${ref} (${named.map((n) => n.id).join(', ')}); name the one you mean by its id`);
    throw notFound(`node ${ref}`, 'list nodes with `enjin nodes`');
  }

  /**
   * Called by the leader's tick: a node whose state exchange has been silent for nodeDownAfterMs is down. Its
   * instances stop counting as live (the reconciler replaces them) and leave the route table.
   */
  markSilentNodesDown(): Node[] {
    const now = this.h.now();
    const downed: Node[] = [];
    if (this.deaf) return downed;
    for (const n of this.h.state.nodes.values()) {
      // Every node (router-only ones too) speaks the state exchange, with a keepalive every 15 s.
      if (n.status !== 'ready') continue;
      const heard = Math.max(Date.parse(n.lastSeenAt ?? n.createdAt) || 0, this.watchingSince);
      if (now - heard <= this.h.nodeDownAfterMs) continue;
      n.status = 'down';
      downed.push(n);
      const silentFor = Math.round((now - heard) / 1000);
      log.warn({ nodeId: n.id, name: n.name, silentForS: silentFor }, 'node is down');
      void this.h.store.saveNode(n).catch((err: unknown) => log.warn({ err, nodeId: n.id }, 'could not save the node as down; memory keeps it'));
      const placed = this.h.state.instancesOnNode(n.id).filter((i) => i.nodeId === n.id && i.desired === 'running').length;
      this.h.notify({
        kind: 'node-down', at: new Date(now).toISOString(), nodeId: n.id,
        message: `node ${n.name} has not reported for ${silentFor} s and is down; its ${placed} instance(s) are taken out of routes and replaced on ready nodes`,
      });
    }
    if (downed.length) this.h.refreshRoutes();
    return downed;
  }

  /** Places nothing new on the node and moves its instances to other nodes, the new ones ready before the old stop. */
  async drain(ref: string): Promise<NodeChange> {
    const node = await this.setDraining(this.find(ref), true);
    const change: NodeChange = { node, jobs: [], waiting: [] };
    await this.convergeProjects(this.projectsOn(node.id), `drain ${node.name}`, change);
    return change;
  }

  /** Undoes a drain: the node takes new instances again (nothing is moved back; new placements spread onto it). */
  async activate(ref: string): Promise<NodeChange> {
    const node = await this.setDraining(this.find(ref), false);
    return { node, jobs: [], waiting: [] };
  }

  /**
   * Forgets a node, the instance rows placed on it (tombstones of stops it never confirmed among them) and what it
   * listed as unmanaged. A ready node is refused unless `force`: its agent would be running instances nobody tracks.
   * Instances that were still meant to run there are replaced on other nodes.
   */
  async remove(ref: string, force: boolean): Promise<NodeChange> {
    const node = this.find(ref);
    if (node.status === 'ready' && !force) {
      throw conflict('node_ready', `node ${node.name} is ready, and removing it would leave its agent's instances untracked; drain it (\`enjin nodes drain ${node.name}\`), stop its agent and remove it once it is down, or remove it now with \`enjin nodes remove ${node.name} --force\``);
    }
    const placed = this.h.state.instancesOnNode(node.id).filter((i) => i.nodeId === node.id);
    const projects = this.projectsOn(node.id);
    // The store first: if it is away the request fails and memory still matches it.
    await this.h.store.deleteNode(node.id);
    for (const i of placed) this.h.state.removeInstance(i.id);
    for (const [id, u] of this.h.state.unmanaged) if (u.nodeId === node.id) this.h.state.unmanaged.delete(id);
    this.h.state.nodes.delete(node.id);
    log.info({ nodeId: node.id, name: node.name, forced: force, instances: placed.length }, 'node removed');
    this.h.notify({ kind: 'info', at: new Date(this.h.now()).toISOString(), nodeId: node.id, message: `node ${node.name} removed${force ? ' (forced)' : ''} with ${placed.length} instance row(s)` });
    this.h.refreshRoutes();
    const change: NodeChange = { node, jobs: [], waiting: [] };
    await this.convergeProjects(projects, `replace instances of removed node ${node.name}`, change);
    return change;
  }

  /** projects with an instance placed on (or reported by) the node */
  private projectsOn(nodeId: string): Project[] {
    const ids = new Set(this.h.state.instancesOnNode(nodeId).map((i) => i.projectId));
    return [...ids].map((id) => this.h.state.projects.get(id)).filter((p): p is Project => !!p);
  }

  private async setDraining(node: Node, draining: boolean): Promise<Node> {
    if (node.draining !== draining) {
      // Desired state: stored before memory changes, so a refused write (store away) changes nothing.
      await this.h.store.saveNode({ ...node, draining });
      node.draining = draining;
      log.info({ nodeId: node.id, name: node.name, draining }, draining ? 'node draining' : 'node active');
    }
    return node;
  }

  private async convergeProjects(projects: Project[], why: string, change: NodeChange): Promise<void> {
    for (const p of projects) {
      try {
        const job = await this.h.converge(p, 'reconcile', `${why}: ${p.name}`);
        if (job) change.jobs.push(job);
        else if (this.h.state.projects.has(p.id) && this.h.state.instancesOnNode(change.node.id).some((i) => i.projectId === p.id && i.desired === 'running')) {
          change.waiting.push({ project: p.name, reason: 'a job is already changing it; the reconcile loop moves its instances once that job ends' });
        }
      } catch (err) {
        // e.g. no other node can take the instances: they stay where they are, and the reconcile loop tries again.
        const reason = err instanceof EnjinError ? err.message : (err as Error).message;
        log.warn({ err, project: p.name }, `${why}: could not plan the project now; the reconcile loop tries again`);
        change.waiting.push({ project: p.name, reason });
      }
    }
  }
}
