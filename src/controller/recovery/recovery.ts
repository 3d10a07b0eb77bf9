// `enjin controller --recover-from-nodes`: a controller whose store was lost starts on an empty one and rebuilds
// nodes, projects, versions and placements from what the nodes keep. While the trust window is open it asks every
// node to show itself (census), admits each node that proves the key it presents, takes its inventory (the desired
// state and the versions it keeps) and, once no new node has shown up for a while, rebuilds and writes the rows.
// Nodes that show up later, still within the window, are merged in. Packages come back from the nodes that kept them,
// manifests from those packages (or, for a version whose package no node kept, from its unpacked directory, checked
// against what the node was told to run).
import { EnjinError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { subjects, type AgentReply, type AgentRequest, type KeptVersion, type NodeInventory, type RecoveryCensus } from '../../core/messages.ts';
import type { RecoveryView } from '../../core/api.ts';
import { componentLogger } from '../../log/logger.ts';
import type { StoreSnapshot } from '../../store/store.ts';
import type { Controller } from '../controller.ts';
import { hostnameClashes } from '../hostnames.ts';
import { rebuild, type NodeFindings } from './rebuild.ts';
import { resolveVersions } from './versions.ts';
import type { TrustWindow } from './trust-window.ts';

const log = componentLogger('recovery');

export interface RecoveryOptions {
  controller: Controller;
  window: TrustWindow;
  controllerId: string;
  /** the first rebuild waits until no node has shown up for this long (default 10 s) */
  quietMs?: number;
  /** how often the census is repeated while the window is open (default 5 s) */
  censusEveryMs?: number;
  /** how long a node has to answer an inventory request (default 15 s) */
  requestTimeoutMs?: number;
  /** what the operator reads as it goes (stderr of `enjin controller`) */
  say?: (line: string) => void;
}

export type RecoveryStatus = RecoveryView;

export class Recovery {
  readonly #o: RecoveryOptions;
  readonly #c: Controller;
  readonly #say: (line: string) => void;
  /** node id → its findings, once its inventory arrived */
  readonly #findings = new Map<string, NodeFindings>();
  /** nodes bound whose inventory is being taken, or that hold no inventory (router-only) */
  readonly #pending = new Set<string>();
  /** nodes not told anything until their findings are written */
  readonly #held = new Set<string>();
  readonly #problems: string[] = [];
  readonly #withoutPackage = new Set<string>();
  #phase: RecoveryStatus['phase'] = 'census';
  #lastBoundAt: number;
  #lastCensusAt = 0;
  readonly #startedAt: number;
  #timers: NodeJS.Timeout[] = [];
  /** one rebuild at a time */
  #work: Promise<void> = Promise.resolve();
  #counts = { projects: 0, versions: 0, instances: 0 };
  #firstQueued = false;
  /** nodes whose findings went into a rebuild */
  readonly #merged = new Set<string>();
  #stopped = false;

  constructor(o: RecoveryOptions) {
    this.#o = o;
    this.#c = o.controller;
    this.#say = o.say ?? (() => {});
    this.#startedAt = Date.now();
    this.#lastBoundAt = this.#startedAt;
  }

  /** Refuses to rebuild into a store that has anything in it: rows there would be overwritten or duplicated. */
  static assertEmpty(s: Pick<StoreSnapshot, 'projects' | 'versions' | 'nodes'>): void {
    if (s.projects.length || s.nodes.length || s.versions.length) {
      throw new EnjinError('store_not_empty', `--recover-from-nodes rebuilds an empty store, and this one has ${s.projects.length} project(s), ${s.versions.length} version(s) and ${s.nodes.length} node(s); start it on a new, empty database (or drop this one), or start without --recover-from-nodes`, { status: 409 });
    }
  }

  start(): void {
    const c = this.#c;
    c.holdDesired = (nodeId) => this.#phase === 'census' || this.#held.has(nodeId);
    c.recovery = { blocksWrites: () => this.#phase === 'census', status: () => this.status() };
    this.#o.window.onBound((nodeId) => this.#bound(nodeId));
    this.#census();
    this.#timers.push(setInterval(() => this.#tick(), 1000));
    const closesIn = Math.round((this.#o.window.closesAt - Date.now()) / 1000);
    this.#say(`recovering from the nodes: admitting the nodes that prove their key for ${closesIn} s; writes wait for the first rebuild`);
    log.info({ windowSeconds: closesIn }, 'recovery from the nodes started');
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  status(): RecoveryStatus {
    return {
      phase: this.#phase,
      windowClosesAt: new Date(this.#o.window.closesAt).toISOString(),
      nodes: this.#findings.size,
      ...this.#counts,
      versionsWithoutPackage: [...this.#withoutPackage],
      problems: [...this.#problems],
    };
  }

  /** Resolves once the first rebuild is written (tests, and the CLI's progress). */
  async firstRebuild(): Promise<void> {
    while (this.#phase === 'census' && !this.#stopped) await new Promise((r) => setTimeout(r, 200));
  }

  /** Once a second: the census again now and then, the first rebuild once quiet, the end of the window. */
  #tick(): void {
    if (this.#stopped) return;
    if (!this.#o.window.open) return this.#windowClosed();
    if (Date.now() - this.#lastCensusAt >= (this.#o.censusEveryMs ?? 5000)) this.#census();
    if (this.#phase !== 'census') return;
    const quiet = Date.now() - this.#lastBoundAt >= (this.#o.quietMs ?? 10_000);
    // Nobody yet: keep waiting (and asking) for the whole window.
    if (!this.#firstQueued && this.#findings.size && !this.#pending.size && quiet) {
      this.#firstQueued = true;
      this.#mergeFindings();
    }
  }

  #windowClosed(): void {
    if (this.#phase === 'census' && this.#findings.size) {
      // The window closed before a quiet moment: rebuild from whoever answered; a later tick ends the recovery.
      if (!this.#firstQueued) {
        this.#firstQueued = true;
        this.#mergeFindings();
      }
      return;
    }
    if (this.#phase === 'census') this.#say('no node proved its key within the recovery window: nothing was rebuilt; nodes must join with a token');
    else this.#say(`the recovery window closed: ${this.#findings.size} node(s) rebuilt; other nodes must join with a token`);
    this.#phase = 'closed';
    log.info(this.status(), 'the recovery window closed');
    this.stop();
    // Whatever is still held (an inventory that never came) is released once the work under way is written.
    void this.#work.then(() => {
      const held = [...this.#held];
      this.#held.clear();
      this.#c.holdDesired = null;
      for (const id of held) this.#c.desired.changed(id);
    });
  }

  #census(): void {
    this.#lastCensusAt = Date.now();
    const census: RecoveryCensus = { controllerId: this.#o.controllerId };
    this.#c.bus.publish(subjects.census, census);
  }

  #bound(nodeId: string): void {
    this.#lastBoundAt = Date.now();
    this.#pending.add(nodeId);
    this.#held.add(nodeId);
    void this.#takeInventory(nodeId);
  }

  async #takeInventory(nodeId: string): Promise<void> {
    const request: AgentRequest = { op: 'inventory' };
    for (let attempt = 1; attempt <= 3 && !this.#stopped; attempt++) {
      try {
        const reply = await this.#c.bus.request<AgentReply>(subjects.agentRpc(nodeId), request, { timeoutMs: this.#o.requestTimeoutMs ?? 15_000 });
        if (reply?.op !== 'inventory' || !reply.inventory) throw new EnjinError('bad_reply', `node ${nodeId} answered the inventory request with ${JSON.stringify(reply).slice(0, 200)}`, { status: 502 });
        const key = this.#o.window.bound().find((b) => b.id === nodeId)?.publicKey;
        if (!key) throw new EnjinError('internal', `node ${nodeId} has no bound key`, { status: 500 });
        this.#findings.set(nodeId, { nodeId, publicKey: key, inventory: checkInventory(nodeId, reply.inventory) });
        log.info({ nodeId, desired: reply.inventory.desired.length, versions: reply.inventory.versions.length }, 'took the inventory of a node');
        this.#pending.delete(nodeId);
        // After the first rebuild was queued, a late node is merged on its own.
        if (this.#firstQueued) this.#mergeFindings();
        return;
      } catch (err) {
        const code = (err as EnjinError).code;
        // A router-only node has no agent to answer: it is admitted as it reported itself.
        if (code === 'bus_no_responder' && attempt === 3) break;
        log.warn({ err, nodeId, attempt }, 'a node did not give its inventory; asking again');
        await new Promise((r) => setTimeout(r, 1000 * attempt));
      }
    }
    this.#pending.delete(nodeId);
    this.#work = this.#work.then(() => this.#admitAsReported(nodeId).catch((err: unknown) => {
      this.#problems.push(`node ${nodeId}: could not be admitted (${(err as Error).message})`);
      log.error({ err, nodeId }, 'a node without an inventory could not be admitted');
    })).finally(() => this.#release([nodeId]));
  }

  /** Rebuilds from every node's findings not merged yet, one rebuild at a time. */
  #mergeFindings(): void {
    this.#work = this.#work.then(async () => {
      const nodeIds = [...this.#findings.keys()].filter((id) => !this.#merged.has(id));
      if (!nodeIds.length) return;
      for (const id of nodeIds) this.#merged.add(id);
      try {
        await this.#rebuild(nodeIds);
      } catch (err) {
        this.#problems.push(`rebuilding from ${nodeIds.join(', ')} failed: ${(err as Error).message}`);
        log.error({ err, nodeIds }, 'a rebuild from the nodes failed; their instances keep running and are listed as unmanaged');
      } finally {
        if (this.#phase === 'census') {
          this.#phase = 'rebuilt';
          this.#report();
        }
        this.#release(nodeIds);
      }
    });
  }

  /** The nodes may be told what to run now: each gets its full desired state, and is asked for its full state. */
  #release(nodeIds: string[]): void {
    for (const id of nodeIds) {
      this.#held.delete(id);
      this.#c.desired.changed(id);
      this.#c.requestNodeState(id);
    }
  }

  /** A node that answers no inventory (a router): its row as its reports made it, with the key it proved. */
  async #admitAsReported(nodeId: string): Promise<void> {
    const c = this.#c;
    const node = c.state.nodes.get(nodeId);
    const key = this.#o.window.bound().find((b) => b.id === nodeId)?.publicKey ?? null;
    if (!node || !key) {
      this.#problems.push(`node ${nodeId} proved its key but neither reported its state nor gave an inventory; it must join again with a token`);
      return;
    }
    const row = { ...node, publicKey: key, roles: node.roles.includes('agent') ? ['router' as const] : node.roles };
    await c.store.saveNode(row);
    c.state.nodes.set(row.id, row);
    log.info({ nodeId }, 'a node without an agent (a router) admitted as it reports itself');
  }

  async #rebuild(nodeIds: string[]): Promise<void> {
    const c = this.#c;
    const findings = nodeIds.map((id) => this.#findings.get(id)!).filter(Boolean);
    const versions = await resolveVersions(findings, {
      controller: c, requestTimeoutMs: this.#o.requestTimeoutMs ?? 15_000,
      problem: (line) => this.#problems.push(line), withoutPackage: (what) => this.#withoutPackage.add(what),
    });
    const plan = rebuild({ state: c.state, findings, versions, now: new Date().toISOString(), newId: (p) => newId(p) });
    this.#problems.push(...plan.problems);
    for (const n of plan.nodes) {
      await c.store.saveNode(n);
      c.state.nodes.set(n.id, n);
    }
    for (const w of plan.workspaces) {
      await c.store.insertWorkspace(w);
      c.state.workspaces.set(w.id, w);
    }
    for (const p of plan.projects) {
      if (p.created) {
        const current = p.versions.find((v) => v.id === p.project.currentVersionId);
        const clash = current ? hostnameClashes(c.state, null, p.project.name, current.manifest, c.domain) : null;
        if (clash) {
          this.#problems.push(`${p.project.name}: not recreated, ${clash.message} (${clash.details.map((d) => d.message).join('; ')})`);
          continue;
        }
      }
      // The row first (versions and instances refer to it), into memory last: the reconciler only looks at projects
      // in memory, and must not see this one before its instances are there.
      await c.store.saveProject(p.project);
      for (const v of p.versions) {
        await c.store.insertVersion(v);
        c.state.versions.set(v.id, v);
      }
      for (const i of p.instances) {
        // What the node reported of it while it was unknown becomes its current state: routes need its address now.
        const seen = c.state.unmanaged.get(i.id);
        if (seen && seen.nodeId === i.nodeId) {
          i.current = seen.report.current;
          c.state.unmanaged.delete(i.id);
        }
        await c.saveInstance(i);
      }
      await c.saveProject(p.project);
      this.#counts.projects += p.created ? 1 : 0;
      this.#counts.versions += p.versions.length;
      this.#counts.instances += p.instances.length;
      log.info({ project: p.project.name, created: p.created, versions: p.versions.length, instances: p.instances.length }, 'rebuilt a project from the nodes');
    }
  }

  #report(): void {
    const s = this.status();
    this.#say(`rebuilt from ${s.nodes} node(s): ${s.projects} project(s), ${s.versions} version(s), ${s.instances} instance(s)`);
    for (const v of s.versionsWithoutPackage) this.#say(`  no node kept the package of ${v}: it runs where it is; redeploy it before it must move`);
    for (const p of s.problems) this.#say(`  problem: ${p}`);
    log.info(s, 'first rebuild from the nodes written');
  }
}

/** An inventory is a node's word: its shape is checked before anything is built from it. */
function checkInventory(nodeId: string, inv: NodeInventory): NodeInventory {
  const bad = (what: string) => new EnjinError('bad_reply', `node ${nodeId} sent an inventory with ${what}`, { status: 502 });
  if (!inv || typeof inv !== 'object' || !inv.node || !Array.isArray(inv.desired) || !Array.isArray(inv.versions)) throw bad('a missing part');
  if (inv.node.nodeId !== nodeId) throw bad(`another node's id (${String(inv.node.nodeId)})`);
  for (const d of inv.desired) {
    if (!d?.spec || !d.version || typeof d.spec.instanceId !== 'string' || typeof d.spec.project !== 'string' || typeof d.version.versionId !== 'string') throw bad('a malformed desired instance');
    if (d.spec.versionId !== d.version.versionId) throw bad(`instance ${d.spec.instanceId} naming two versions`);
  }
  for (const k of inv.versions as KeptVersion[]) if (typeof k?.versionId !== 'string' || typeof k.sha256 !== 'string') throw bad('a malformed version');
  return inv;
}
