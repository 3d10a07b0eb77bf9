// A whole enjin cluster on one machine for the fault suite: hosts as network namespaces, a private PostgreSQL and
// nats-server, controllers in the root namespace on the bridge's address, an agent (with its router) on every host.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, eventually, runCli, type CliResult } from './enjin.ts';
import { HostNetwork, pidsIn, type HostProcess, type NetHost } from './netns.ts';
import { NatsServer, PostgresServer, freePort } from './cluster-services.ts';
import type { LoadTarget } from './load.ts';

/** The label every agent carries so a node can be told apart from the others (they share one hostname; names are h1, h2… too). */
export const HOST_LABEL = 'enjin-test-host';
export const ROUTER_PORT = 8080;
/** Each host has its own network namespace, so every agent may use the same port range. */
const PORT_RANGE = '20000-20199';

export interface NodeView {
  id: string;
  name: string;
  state: 'ready' | 'down' | 'draining' | string;
  labels: Record<string, string> | string[];
  instances: number;
  [more: string]: unknown;
}

export interface InstanceView {
  id: string;
  project: string;
  service: string;
  node: string;
  pid: number | null;
  state: string;
  desired: string;
  version: number;
  restarts: number;
  [more: string]: unknown;
}

export interface ControllerProcess {
  index: number;
  dataDir: string;
  api: string;
  child: ChildProcess;
  output(): string;
}

/** Why the cluster commands cannot run from this checkout, or null when `enjin controller --help` works. */
export function clusterCommandsUnavailable(): string | null {
  for (const cmd of [['controller', '--help'], ['agent', '--help'], ['nodes', 'token', '--help']]) {
    const r = spawnSync(process.execPath, [BIN, ...cmd], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    const text = `${r.stdout}${r.stderr}`;
    const name = cmd.slice(0, -1).join(' ');
    if (r.status !== 0) return `\`enjin ${name}\` does not work here (exit ${r.status}): ${text.trim().split('\n')[0] ?? ''}`;
    // For a command it does not know, commander prints the program's (or the parent's) help and exits 0 all the same.
    if (!text.includes(`Usage: enjin ${name} `)) return `\`enjin ${name}\` does not exist in this build yet`;
  }
  return null;
}

/** A node's state by the contract (`state`), read from `status` and `draining` where an older API reports those. */
export function nodeState(node: NodeView): string {
  const n = node as NodeView & { status?: string; draining?: boolean };
  return n.state ?? (n.draining ? 'draining' : n.status ?? 'unknown');
}

function labelOf(node: NodeView): string | undefined {
  if (Array.isArray(node.labels)) return node.labels.find((l) => l.startsWith(`${HOST_LABEL}=`))?.slice(HOST_LABEL.length + 1);
  return node.labels?.[HOST_LABEL];
}

export class Cluster {
  readonly controllers: ControllerProcess[] = [];
  readonly agents = new Map<string, HostProcess>();
  /** a reusable join token, so a restarted agent can be started with the very same command line */
  joinToken = '';
  private lastLeader: ControllerProcess | null = null;
  private constructor(readonly net: HostNetwork, readonly pg: PostgresServer, readonly nats: NatsServer, readonly dir: string) {}

  /** Builds the hosts and engines, starts `controllers` controllers and an agent on every host, and waits for them. */
  static async start(opts: { hosts: number; controllers: number }): Promise<Cluster> {
    const net = HostNetwork.create(opts.hosts);
    let pg: PostgresServer | null = null;
    let nats: NatsServer | null = null;
    let cluster: Cluster | null = null;
    try {
      // Everything lives under the network's run directory, so a run killed before cleaning up is swept by the next.
      pg = await PostgresServer.start(join(net.dir, 'pg'));
      nats = await NatsServer.start(net.bridgeIp, join(net.dir, 'nats'));
      cluster = new Cluster(net, pg, nats, net.dir);
      for (let i = 0; i < opts.controllers; i++) await cluster.startController(i);
      await cluster.waitForLeader();
      const t = await cluster.cli(['--json', 'nodes', 'token', '--reusable', '--ttl', '1h']);
      cluster.joinToken = t.json?.token;
      if (!cluster.joinToken) throw new Error(`enjin nodes token gave no token: ${t.stdout}${t.stderr}`);
      for (const h of net.hosts) cluster.startAgent(h);
      await cluster.waitForNodes(net.hosts.map((h) => h.name));
      return cluster;
    } catch (err) {
      if (cluster) await cluster.destroy();
      else {
        await nats?.destroy();
        await pg?.destroy();
        await net.destroy();
      }
      throw err;
    }
  }

  /** Starts controller `index` (again, after a kill: same data directory and port). */
  async startController(index: number): Promise<ControllerProcess> {
    const old = this.controllers[index];
    const dataDir = old?.dataDir ?? join(this.dir, `controller-${index + 1}`);
    mkdirSync(dataDir, { recursive: true });
    const port = old ? Number(new URL(old.api).port) : await freePort(this.net.bridgeIp);
    const args = [BIN, 'controller', '--database-url', this.pg.url, '--nats', this.nats.url, '--api-host', this.net.bridgeIp, '--api-port', String(port), '--data', dataDir];
    const child = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' } });
    let out = '';
    const add = (d: Buffer): void => { out = (out + d.toString()).slice(-200_000); };
    child.stdout!.on('data', add);
    child.stderr!.on('data', add);
    const c: ControllerProcess = { index, dataDir, api: `http://${this.net.bridgeIp}:${port}`, child, output: () => out };
    this.controllers[index] = c;
    await eventually(async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`controller ${index + 1} exited: ${out.slice(-3000)}`);
      const res = await fetch(`${c.api}/healthz`, { signal: AbortSignal.timeout(5000) });
      return res.status === 200 && this.tokenOf(c) !== '';
    }, `controller ${index + 1} healthy at ${c.api}`, 120_000).catch((err: Error) => { throw new Error(`${err.message}\n${out.slice(-3000)}`); });
    return c;
  }

  tokenOf(c: ControllerProcess): string {
    try {
      return JSON.parse(readFileSync(join(c.dataDir, 'credentials.json'), 'utf8')).token ?? '';
    } catch {
      return '';
    }
  }

  /** kill -9 of a controller process (its whole group). */
  async killController(c: ControllerProcess): Promise<void> {
    if (c.child.exitCode !== null || c.child.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.child.once('exit', () => r()));
    try { process.kill(-c.child.pid!, 'SIGKILL'); } catch { /* gone */ }
    await gone;
  }

  live(c: ControllerProcess): boolean {
    return c.child.exitCode === null && c.child.signalCode === null;
  }

  /** GET /v1/cluster from one controller. */
  async clusterView(c: ControllerProcess): Promise<{ self?: { id: string; leader: boolean }; leader?: unknown; store?: { available: boolean } } | null> {
    try {
      const res = await fetch(`${c.api}/v1/cluster`, { headers: { authorization: `Bearer ${this.tokenOf(c)}` }, signal: AbortSignal.timeout(5000) });
      return res.ok ? await res.json() : null;
    } catch {
      return null;
    }
  }

  /** The live controller that says it leads (`self.leader` in GET /v1/cluster), or null. */
  async leader(): Promise<ControllerProcess | null> {
    for (const c of this.controllers) {
      if (!c || !this.live(c)) continue;
      const view = await this.clusterView(c);
      if (view?.self?.leader) {
        this.lastLeader = c;
        return c;
      }
    }
    return null;
  }

  /** Whom to ask: the leader; when none says so (a store outage may blur it), the last one that did; else any live one. */
  private async target(): Promise<ControllerProcess | undefined> {
    return (await this.leader()) ?? (this.lastLeader && this.live(this.lastLeader) ? this.lastLeader : undefined) ?? this.controllers.find((x) => x && this.live(x));
  }

  waitForLeader(timeoutMs = 60_000): Promise<ControllerProcess> {
    return eventually(() => this.leader(), 'a leading controller', timeoutMs);
  }

  /** The CLI against a controller (the leader by default, else any live one), as a user with its credentials. */
  async cli(args: string[], opts: { controller?: ControllerProcess; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
    const c = opts.controller ?? (await this.target());
    if (!c) throw new Error('no live controller to talk to');
    return runCli(args, { dataDir: c.dataDir, cwd: opts.cwd, timeoutMs: opts.timeoutMs ?? 180_000, env: { ENJIN_API: c.api, ENJIN_TOKEN: this.tokenOf(c) } });
  }

  /** A raw API call (to see status codes and error codes the CLI would turn into text). */
  async api(method: string, path: string, body?: unknown, controller?: ControllerProcess): Promise<{ status: number; json: any }> {
    const c = controller ?? (await this.target());
    if (!c) throw new Error('no live controller to talk to');
    const res = await fetch(`${c.api}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.tokenOf(c)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: unknown = null;
    try { json = JSON.parse(text); } catch { json = { raw: text }; }
    return { status: res.status, json };
  }

  async nodes(): Promise<NodeView[]> {
    const r = await this.cli(['--json', 'nodes'], { timeoutMs: 60_000 });
    if (r.code !== 0 || !Array.isArray(r.json?.nodes)) throw new Error(`enjin nodes failed: ${r.stderr}${r.stdout}`);
    return r.json.nodes;
  }

  async ps(project?: string): Promise<InstanceView[]> {
    const r = await this.cli(['--json', 'ps', ...(project ? [project] : [])], { timeoutMs: 60_000 });
    if (r.code !== 0 || !Array.isArray(r.json?.instances)) throw new Error(`enjin ps failed: ${r.stderr}${r.stdout}`);
    return r.json.instances;
  }

  /** The host a node runs on (by its label), or undefined for a node this cluster did not start. */
  hostOfNode(nodes: NodeView[], nodeId: string): string | undefined {
    // The contract says an instance's `node` is the node's id; fall back to a name only when it is unambiguous.
    const byName = nodes.filter((x) => x.name === nodeId);
    const n = nodes.find((x) => x.id === nodeId) ?? (byName.length === 1 ? byName[0] : undefined);
    return n ? labelOf(n) : undefined;
  }

  /** The host an instance runs on: by its node, else by the address it listens on (agents advertise the host's). */
  hostOfInstance(nodes: NodeView[], instance: InstanceView): string | undefined {
    const address = (instance as InstanceView & { host?: string }).host;
    return this.hostOfNode(nodes, instance.node) ?? this.net.hosts.find((h) => h.ip === address)?.name;
  }

  nodeOfHost(nodes: NodeView[], host: string): NodeView | undefined {
    return nodes.find((n) => labelOf(n) === host);
  }

  /** ready | down | draining for the host's node; undefined while it is not listed. */
  stateOfHost(nodes: NodeView[], host: string): string | undefined {
    const n = this.nodeOfHost(nodes, host);
    return n ? nodeState(n) : undefined;
  }

  /** Waits until every named host's node is listed ready. */
  async waitForNodes(hosts: string[], timeoutMs = 120_000): Promise<NodeView[]> {
    return eventually(async () => {
      const nodes = await this.nodes();
      return hosts.every((h) => this.stateOfHost(nodes, h) === 'ready') ? nodes : null;
    }, `nodes ready on ${hosts.join(', ')}`, timeoutMs);
  }

  /** Starts the agent (with its router on ROUTER_PORT) on a host; the same command line when started again. */
  startAgent(host: NetHost | string): HostProcess {
    const h = typeof host === 'string' ? this.net.host(host) : host;
    const dataDir = join(this.dir, `agent-${h.name}`);
    mkdirSync(dataDir, { recursive: true });
    // Joining admits a key, a write: ask the controller that last said it leads.
    const join_ = (this.lastLeader && this.live(this.lastLeader) ? this.lastLeader : this.controllers.find((c) => c && this.live(c))!).api;
    const args = [BIN, 'agent', '--join', join_, '--token', this.joinToken, '--data', dataDir, '--advertise-host', h.ip,
      '--router-port', String(ROUTER_PORT), '--port-range', PORT_RANGE, '--labels', `${HOST_LABEL}=${h.name}`, '--name', h.name];
    const p = this.net.exec(h, process.execPath, args, { cwd: ROOT, env: { ENJIN_API: '', ENJIN_TOKEN: '' } });
    this.agents.set(h.name, p);
    return p;
  }

  /** Brings every host back after a fault that went wrong: its link up, and its agent started again if it is gone. */
  restoreHosts(): string[] {
    const restarted: string[] = [];
    for (const h of this.net.hosts) {
      this.net.linkUp(h);
      const p = this.agents.get(h.name);
      if (!p || p.child.exitCode !== null || p.child.signalCode !== null) {
        this.startAgent(h);
        restarted.push(h.name);
      }
    }
    return restarted;
  }

  /** kill -9 of the agent process alone (not its group: instances must outlive it, as they would a crashed agent). */
  async killAgent(host: string): Promise<void> {
    const p = this.agents.get(host);
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    process.kill(p.pid, 'SIGKILL');
    await p.exited;
  }

  /** Routers to send load through: the given hosts (all by default). */
  routers(hosts: string[] = this.net.hosts.map((h) => h.name)): LoadTarget[] {
    return hosts.map((name) => ({ name, host: this.net.host(name).ip, port: ROUTER_PORT }));
  }

  /**
   * Pids of the app's processes (`node server.js`) really running on a host, read from /proc, whatever enjin reports:
   * how duplicates are counted.
   */
  appPids(host: string, script = 'server.js'): number[] {
    return this.appProcesses(host, script).map((p) => p.pid);
  }

  /**
   * The app's processes on a host with their parents: the process driver runs `sh -c COMMAND`, and the pid it reports
   * may be that shell's (the parent) or the app's own, depending on whether the shell execs.
   */
  appProcesses(host: string, script = 'server.js'): Array<{ pid: number; ppid: number }> {
    const found: Array<{ pid: number; ppid: number }> = [];
    for (const pid of pidsIn(this.net.host(host).netns)) {
      try {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
        if (!(argv.length >= 2 && /(^|\/)node[^/]*$/.test(argv[0]) && argv[1] === script)) continue;
        // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after the last ')'.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        found.push({ pid, ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
      } catch { /* gone meanwhile */ }
    }
    return found;
  }

  /** Every running app process per host (hosts given, or all). */
  appPidsByHost(hosts: string[] = this.net.hosts.map((h) => h.name)): Map<string, number[]> {
    return new Map(hosts.map((h) => [h, this.appPids(h)]));
  }

  /** Everything the harness knows for a failure message: controller and agent output tails, engine logs. */
  diagnostics(): string {
    const parts: string[] = [];
    for (const c of this.controllers) if (c) parts.push(`--- controller ${c.index + 1} (${this.live(c) ? 'live' : 'dead'})\n${c.output().slice(-2500)}`);
    for (const [h, p] of this.agents) parts.push(`--- agent ${h}\n${p.output().slice(-2500)}`);
    return parts.join('\n');
  }

  async destroy(): Promise<void> {
    for (const c of this.controllers) if (c && this.live(c)) await this.killController(c);
    await this.nats.destroy();
    await this.pg.destroy();
    await this.net.destroy();
  }
}
