// Several "hosts" on one machine for end-to-end tests: a network namespace per host, wired by veth pairs to one
// bridge in the root namespace, with partition (link down) and host death (every process killed, link down).
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where each run notes its owner pid, so a later run removes only the leftovers of runs whose process is gone. */
const RUNS_DIR = '/run/enjin-netns-runs';
const PREFIX = 'enjin-';
/** run ids are 4 hex digits: `enjin-abcd-h12` stays within the 15 characters Linux allows an interface name. */
const RUN_PATTERN = /^enjin-([0-9a-f]{4})(?:-|$)/;

export interface NetHost {
  /** h1, h2, … */
  name: string;
  /** the network namespace: enjin-RUN-hN */
  netns: string;
  /** the host's address on the bridge's /24 */
  ip: string;
  /** the veth end in the root namespace (on the bridge); downing it partitions the host */
  link: string;
}

export interface HostProcess {
  host: NetHost;
  child: ChildProcess;
  pid: number;
  /** stdout and stderr as they came, for failure messages */
  output(): string;
  /** resolves with the exit code or signal once the process is gone */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface ExecOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** keep at most this many characters of output (the tail) */
  keepOutput?: number;
  /** enter the network namespace only (nsenter), keeping the machine's /sys and its cgroups; default: ip netns exec */
  shareCgroups?: boolean;
}

/** Why netns tests cannot run here, or null when they can (root and `ip` present). */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the suite as root to build hosts with ip netns)';
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return 'the `ip` command (iproute2) is missing; install the Debian package `iproute2`';
  return null;
}

/** nsenter (util-linux), when present, enters a host's network namespace and nothing else. */
const NSENTER = ['/usr/bin/nsenter', '/bin/nsenter', '/usr/sbin/nsenter'].find((p) => existsSync(p)) ?? null;

function ip(args: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 30_000 });
  if (!opts.allowFail && (r.error || r.status !== 0)) throw new Error(`ip ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout ?? '';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function netnsNames(): string[] {
  return ip(['netns', 'list'], { allowFail: true }).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

function linkNames(): string[] {
  // `ip -o link` prints "3: name@peer: <…>"; the name ends at '@' or ':'.
  return ip(['-o', 'link', 'show'], { allowFail: true }).split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((n): n is string => !!n);
}

/** Pids of every process living in a namespace (`ip netns pids`): the harness's own and everything they spawned. */
export function pidsIn(netns: string): number[] {
  return ip(['netns', 'pids', netns], { allowFail: true }).split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

function killAllIn(netns: string): void {
  // Instances may have been spawned in their own sessions: killing process groups is not enough, so kill by namespace.
  for (let round = 0; round < 20; round++) {
    const pids = pidsIn(netns);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
    }
    spawnSync('sleep', ['0.1']);
  }
}

/** The run's directory: files of processes the run starts in the root namespace live here (see runDir). */
export function runDirOf(run: string): string {
  return `/tmp/enjin-run-${run}`;
}

/**
 * Kills root-namespace processes whose command line names the run's directory (controllers, nats-server, postgres):
 * they are the run's own, and a run killed before its cleanup would otherwise leave them behind.
 */
function killRootProcessesOf(run: string): void {
  const marker = runDirOf(run);
  for (let round = 0; round < 20; round++) {
    let found = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
      let cmdline = '';
      try { cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8'); } catch { continue; }
      if (!cmdline.includes(marker)) continue;
      found++;
      try { process.kill(Number(entry), 'SIGKILL'); } catch { /* gone already */ }
    }
    if (found === 0) return;
    spawnSync('sleep', ['0.1']);
  }
}

function tearDownRun(run: string): void {
  const name = `${PREFIX}${run}`;
  killRootProcessesOf(run);
  for (const ns of netnsNames().filter((n) => n.startsWith(`${name}-`))) {
    killAllIn(ns);
    ip(['netns', 'del', ns], { allowFail: true });
  }
  // Deleting a namespace deletes the veth ends inside it, and with them their peers; delete stragglers and the bridge.
  for (const link of linkNames().filter((l) => l === name || l.startsWith(`${name}-`))) ip(['link', 'del', link], { allowFail: true });
  rmSync(runDirOf(run), { recursive: true, force: true });
  rmSync(join(RUNS_DIR, run), { force: true });
}

/** Removes namespaces and links of earlier runs whose owner process is gone (a crashed or killed test run). */
export function removeLeftovers(): string[] {
  const runs = new Set<string>();
  for (const n of [...netnsNames(), ...linkNames()]) {
    const m = RUN_PATTERN.exec(n);
    if (m) runs.add(m[1]);
  }
  if (existsSync(RUNS_DIR)) for (const f of readdirSync(RUNS_DIR)) if (/^[0-9a-f]{4}$/.test(f)) runs.add(f);
  for (const f of readdirSync('/tmp')) {
    const m = /^enjin-run-([0-9a-f]{4})$/.exec(f);
    if (m) runs.add(m[1]);
  }
  const removed: string[] = [];
  for (const run of runs) {
    let owner = 0;
    try { owner = Number(readFileSync(join(RUNS_DIR, run), 'utf8')); } catch { /* no note: nobody owns it */ }
    // A run still owned by a live process is another test file's network, running beside this one.
    if (owner && owner !== process.pid && alive(owner)) continue;
    tearDownRun(run);
    removed.push(run);
  }
  return removed;
}

/** A /24 no interface on this machine uses yet, in 10.100–10.199. */
function freeSubnet(): string {
  const used = ip(['-o', '-4', 'addr', 'show'], { allowFail: true }) + ip(['-4', 'route', 'show'], { allowFail: true });
  for (let attempt = 0; attempt < 200; attempt++) {
    const subnet = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.x.y.0/24 subnet for the test network');
}

export class HostNetwork {
  readonly tracked = new Set<HostProcess>();
  private destroyed = false;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.destroySync();
    process.kill(process.pid, signal);
  };
  private readonly onExit = (): void => this.destroySync();

  private constructor(
    /** 4 hex digits naming everything this run makes */
    readonly runId: string,
    /** the bridge in the root namespace */
    readonly bridge: string,
    /** the bridge's address: processes in the root namespace listen here to be reachable from every host */
    readonly bridgeIp: string,
    readonly hosts: NetHost[],
  ) {}

  /** Builds `count` hosts; throws (after removing what it made) if the kernel refuses. */
  static create(count: number): HostNetwork {
    const why = netnsUnavailable();
    if (why) throw new Error(why);
    removeLeftovers();
    let run = '';
    for (;;) {
      run = randomBytes(2).toString('hex');
      const taken = [...netnsNames(), ...linkNames()].some((n) => n.startsWith(`${PREFIX}${run}`)) || existsSync(join(RUNS_DIR, run)) || existsSync(runDirOf(run));
      if (!taken) break;
    }
    mkdirSync(RUNS_DIR, { recursive: true });
    writeFileSync(join(RUNS_DIR, run), String(process.pid));
    // Readable by all: PostgreSQL runs as its own OS user below it.
    mkdirSync(runDirOf(run), { mode: 0o755 });
    chmodSync(runDirOf(run), 0o755);
    const subnet = freeSubnet();
    const bridge = `${PREFIX}${run}`;
    const hosts: NetHost[] = [];
    for (let n = 1; n <= count; n++) hosts.push({ name: `h${n}`, netns: `${bridge}-h${n}`, ip: `${subnet}.${n + 1}`, link: `${bridge}-h${n}` });
    const net = new HostNetwork(run, bridge, `${subnet}.1`, hosts);
    process.once('exit', net.onExit);
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, net.onSignal);
    try {
      ip(['link', 'add', bridge, 'type', 'bridge']);
      ip(['addr', 'add', `${net.bridgeIp}/24`, 'dev', bridge]);
      ip(['link', 'set', bridge, 'up']);
      for (const h of hosts) {
        ip(['netns', 'add', h.netns]);
        // The peer is created with a temporary name, moved into the namespace, and renamed eth0 there.
        const peer = `${h.link}p`;
        ip(['link', 'add', h.link, 'type', 'veth', 'peer', 'name', peer]);
        ip(['link', 'set', h.link, 'master', bridge]);
        ip(['link', 'set', h.link, 'up']);
        ip(['link', 'set', peer, 'netns', h.netns]);
        ip(['-n', h.netns, 'link', 'set', peer, 'name', 'eth0']);
        ip(['-n', h.netns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
        ip(['-n', h.netns, 'link', 'set', 'lo', 'up']);
        ip(['-n', h.netns, 'link', 'set', 'eth0', 'up']);
        ip(['-n', h.netns, 'route', 'add', 'default', 'via', net.bridgeIp]);
      }
    } catch (err) {
      net.destroySync();
      throw err;
    }
    return net;
  }

  /** A directory for this run's files, removed with the network; a process whose command line names it dies with it. */
  get dir(): string {
    return runDirOf(this.runId);
  }

  host(name: string): NetHost {
    const h = this.hosts.find((x) => x.name === name || x.netns === name || x.ip === name);
    if (!h) throw new Error(`no host ${name} in this network`);
    return h;
  }

  /** Spawns `cmd args` inside the host's namespace, in a process group of its own, and tracks it for cleanup. */
  exec(host: NetHost | string, cmd: string, args: string[], opts: ExecOptions = {}): HostProcess {
    if (this.destroyed) throw new Error('the host network is destroyed');
    const h = typeof host === 'string' ? this.host(host) : host;
    const spawnOpts: SpawnOptions = { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true };
    // Both exec the command in place, so the pid we get is the command's own. `ip netns exec` also mounts a fresh /sys,
    // so the process sees no /sys/fs/cgroup: processes of different "hosts" then cannot meet in one cgroup tree, as
    // on real hosts. nsenter enters the network namespace only, sharing the machine's cgroups between hosts.
    const child = opts.shareCgroups && NSENTER
      ? spawn(NSENTER, [`--net=/run/netns/${h.netns}`, '--', cmd, ...args], spawnOpts)
      : spawn('ip', ['netns', 'exec', h.netns, cmd, ...args], spawnOpts);
    if (!child.pid) throw new Error(`could not spawn ${cmd} in ${h.netns}`);
    const keep = opts.keepOutput ?? 200_000;
    let out = '';
    const add = (d: Buffer): void => {
      out += d.toString();
      if (out.length > keep * 2) out = out.slice(-keep);
    };
    child.stdout!.on('data', add);
    child.stderr!.on('data', add);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const proc: HostProcess = { host: h, child, pid: child.pid, output: () => out.slice(-keep), exited };
    this.tracked.add(proc);
    void exited.then(() => this.tracked.delete(proc));
    return proc;
  }

  /** Runs a command in the host's namespace to completion. */
  run(host: NetHost | string, cmd: string, args: string[], opts: ExecOptions & { timeoutMs?: number } = {}): Promise<{ code: number | null; output: string }> {
    const p = this.exec(host, cmd, args, opts);
    const timer = setTimeout(() => this.killGroup(p), opts.timeoutMs ?? 60_000);
    return p.exited.then(({ code }) => {
      clearTimeout(timer);
      return { code, output: p.output() };
    });
  }

  /** Partitions the host: its veth end on the bridge goes down, so nothing passes either way (connections stall). */
  linkDown(host: NetHost | string): void {
    const h = typeof host === 'string' ? this.host(host) : host;
    ip(['link', 'set', h.link, 'down']);
  }

  linkUp(host: NetHost | string): void {
    const h = typeof host === 'string' ? this.host(host) : host;
    ip(['link', 'set', h.link, 'up']);
  }

  /** SIGKILLs a tracked process's group (the process and whatever it spawned in its group). */
  killGroup(p: HostProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
    try { process.kill(-p.pid, signal); } catch { /* the group is gone */ }
  }

  /** The host dies: every process the harness started there (by group), then everything else in its namespace, then its link. */
  killHost(host: NetHost | string): void {
    const h = typeof host === 'string' ? this.host(host) : host;
    for (const p of [...this.tracked]) if (p.host === h) this.killGroup(p);
    killAllIn(h.netns);
    this.linkDown(h);
  }

  /** Kills everything (in the hosts, and in the root namespace what names the run's directory), deletes the namespaces, veths, bridge and directory. Safe to call twice. */
  async destroy(): Promise<void> {
    this.destroySync();
  }

  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeListener(s, this.onSignal);
    for (const p of this.tracked) this.killGroup(p);
    tearDownRun(this.runId);
  }
}
