// One-off runs (`enjin run`) on this node: a process in a prepared build's directory with a release's environment, as
// the app's user, in a cgroup of its own; its output streamed to the controller and its input taken from it, over
// per-run bus subjects; killed with everything it started when it ends, when the controller says so or goes silent.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Bus, Subscription } from '../bus/bus.ts';
import { EnjinError } from '../core/errors.ts';
import { subjects } from '../core/messages.ts';
import { RUN_CHUNK_MAX_BYTES, type OneOffRunSpec, type RunInputMessage, type RunOutputMessage } from '../core/run-messages.ts';
import { componentLogger } from '../log/logger.ts';
import { withBuildPaths } from './build-env.ts';
import type { AppAccount } from './app-accounts.ts';
import type { Driver, RunningCommand, TaskExit, TaskHandle } from './drivers/driver.ts';
import { volumeEnvFor, type VolumeStore } from './volumes.ts';
import { checkRunInput, checkRunSpec, exitStatus, runCommandLine } from './one-off-spec.ts';

const log = componentLogger('agent');

export interface OneOffRunnerOptions {
  nodeId: string;
  bus: Bus;
  driver: Driver;
  /** where pid files of running runs are kept, so a restarted agent kills what a dead one left */
  dir: string;
  /** the build directory of a prepared version; null when it is not prepared here */
  preparedDir(versionId: string): string | null;
  account(project: string): AppAccount;
  baseEnv(): Record<string, string>;
  /** makes a project's volume directories if new and gives their ENJIN_VOLUME_* variables; absent: volumes refused */
  volumes?: Pick<VolumeStore, 'ensure'>;
  /** output bytes sent and not yet acknowledged before reading pauses; default 1 MiB */
  windowBytes?: number;
  /** how often `alive` is sent, ms; default 5000 */
  keepaliveMs?: number;
  /** a run not heard from its controller this long is killed, ms; default 30000 */
  silenceMs?: number;
}

/** How long output may trail the exit of a run whose pipes something escaped the cgroup still holds. */
const OUTPUT_DRAIN_MS = 2000;

interface ActiveRun {
  spec: OneOffRunSpec;
  cmd: RunningCommand;
  /** why it is being killed, said in its exit message */
  killedBecause: string | null;
  /** resizes apply one after the other, so the last one asked is the size the terminal keeps */
  resizing: Promise<void>;
}

export class OneOffRunner {
  private readonly o: OneOffRunnerOptions;
  private readonly runs = new Map<string, ActiveRun>();
  /** tells agents sharing one host's cgroups apart (several nodes on one machine) */
  private readonly agentTag: string;
  private stopping = false;

  constructor(o: OneOffRunnerOptions) {
    this.o = o;
    this.agentTag = createHash('sha256').update(o.dir).digest('hex').slice(0, 8);
  }

  get size(): number {
    return this.runs.size;
  }

  /** Starts a run; resolves with its pid once it runs. Its output, input and exit then travel on its subjects. */
  async start(raw: unknown): Promise<number> {
    const spec = checkRunSpec(raw);
    if (this.stopping) throw new EnjinError('agent_stopping', 'this agent is shutting down; run the command again', { status: 503 });
    if (this.runs.has(spec.runId)) throw new EnjinError('conflict', `run ${spec.runId} is already running here`, { status: 409 });
    const cwd = this.o.preparedDir(spec.version.versionId);
    if (!cwd) throw new EnjinError('not_prepared', `version ${spec.version.versionId} is not prepared on this node; a run needs its build prepared first`, { status: 409 });
    if (spec.tty && !onPath('script', this.o.baseEnv().PATH)) {
      throw new EnjinError('spawn_failed', 'this node has no `script` (util-linux) to give the command a terminal: install util-linux there, or run without a terminal (`enjin run --no-tty`)', { status: 500 });
    }
    const account = this.o.account(spec.project);
    // As an instance of the service would: the agent's base, the app's HOME, the release's env, the build's paths.
    const env = withBuildPaths({ ...this.o.baseEnv(), HOME: account.home, ...spec.env }, cwd, spec.version.paths, spec.version.pathEnv);
    if (spec.tty) env.TERM = spec.tty.term;
    Object.assign(env, volumeEnvFor(this.o.volumes, spec.service, spec.workspace ?? 'default', spec.project, spec.volumes));
    const cmd = await this.o.driver.run({
      id: `run-${this.agentTag}-${spec.runId}`, command: runCommandLine(spec), cwd, env, stdin: true,
      ...(account.uid !== undefined ? { uid: account.uid, gid: account.gid } : {}),
    });
    const run: ActiveRun = { spec, cmd, killedBecause: null, resizing: Promise.resolve() };
    this.runs.set(spec.runId, run);
    mkdirSync(this.o.dir, { recursive: true, mode: 0o700 });
    // On disk while it runs: a restarted agent kills what a dead one left (see reapOrphans).
    writeFileSync(this.pidFile(spec.runId), JSON.stringify(cmd.handle), { mode: 0o600 });
    if (this.stopping) run.killedBecause = 'the agent is stopping';
    void this.supervise(run).catch((err: unknown) => log.error({ err, runId: spec.runId }, 'a one-off run failed in the agent'));
    if (run.killedBecause) void cmd.kill();
    return cmd.handle.pid;
  }

  private async supervise(run: ActiveRun): Promise<void> {
    const { spec, cmd } = run;
    const o = this.o;
    const out = subjects.runOutput(o.nodeId, spec.runId);
    let seq = 0;
    const send = (m: RunOutputMessage) => o.bus.publish(out, m);
    const kill = (why: string) => {
      if (run.killedBecause) return;
      run.killedBecause = why;
      void cmd.kill();
    };

    // Output: sent in chunks, read no further ahead of the controller's acknowledgements than the window.
    const windowBytes = o.windowBytes ?? 1024 * 1024;
    let sent = 0;
    let acked = 0;
    let lastOutputAt = Date.now();
    const streams = [cmd.stdout, cmd.stderr];
    const paused = () => sent - acked > windowBytes;
    const pumps = (['stdout', 'stderr'] as const).map((stream, k) => new Promise<void>((resolve) => {
      const s = streams[k];
      s.on('data', (buf: Buffer) => {
        lastOutputAt = Date.now();
        for (let at = 0; at < buf.length; at += RUN_CHUNK_MAX_BYTES) {
          const piece = buf.subarray(at, at + RUN_CHUNK_MAX_BYTES);
          send({ kind: 'output', seq: ++seq, stream, data: piece.toString('base64') });
          sent += piece.length;
        }
        if (paused()) for (const x of streams) x.pause();
      });
      s.once('end', resolve);
      s.once('close', resolve);
      s.once('error', (err) => {
        log.warn({ err, runId: spec.runId, stream }, 'reading the output of a one-off run failed');
        resolve();
      });
    }));

    // Input from the controller, checked: nothing from the bus is trusted.
    let heardAt = Date.now();
    let stdinSeq = 0;
    let stdinBytes = 0;
    const stdin = cmd.stdin!;
    stdin.on('error', (err) => log.debug({ err, runId: spec.runId }, 'the stdin of a one-off run closed before all of it was written'));
    const sub: Subscription = o.bus.subscribe(subjects.runInput(o.nodeId, spec.runId), (msg) => {
      const m = checkRunInput(msg.data);
      if (!m) {
        log.warn({ runId: spec.runId, sender: msg.sender }, 'dropped a malformed message for a one-off run');
        return;
      }
      heardAt = Date.now();
      this.apply(run, m, {
        stdin: (data, n) => {
          if (n !== ++stdinSeq) {
            log.warn({ runId: spec.runId, expected: stdinSeq, got: n }, 'stdin chunks of a one-off run were lost on the bus');
            stdinSeq = n;
          }
          const buf = Buffer.from(data, 'base64');
          if (stdin.writable) stdin.write(buf, () => { stdinBytes += buf.length; send({ kind: 'stdin-ack', bytes: stdinBytes }); });
        },
        ack: (bytes) => {
          acked = Math.max(acked, bytes);
          if (!paused()) for (const x of streams) x.resume();
        },
        kill,
      });
    });
    const keepalive = setInterval(() => {
      send({ kind: 'alive' });
      if (Date.now() - heardAt > (o.silenceMs ?? 30_000)) kill('the controller stopped answering (the client went away or the bus is down)');
    }, o.keepaliveMs ?? 5000);

    let exit: TaskExit;
    try {
      exit = await cmd.exited;
      // Everything it printed goes out before its exit, unless something that escaped the cgroup holds the pipes.
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (!paused() && Date.now() - lastOutputAt > OUTPUT_DRAIN_MS) done();
        }, 250);
        const done = () => {
          clearInterval(check);
          resolve();
        };
        void Promise.all(pumps).then(done);
      });
      for (const s of streams) s.destroy();
    } finally {
      clearInterval(keepalive);
      sub.unsubscribe();
      this.runs.delete(spec.runId);
      rmSync(this.pidFile(spec.runId), { force: true });
    }
    const exitCode = exitStatus(exit.code, exit.signal, (s) => osConstants.signals[s as NodeJS.Signals]);
    const message = run.killedBecause ? `killed: ${run.killedBecause}` : exit.oomKilled ? 'killed for going over its memory limit' : undefined;
    send({ kind: 'exit', seq: ++seq, code: exit.code, signal: exit.signal, exitCode, ...(message ? { message } : {}) });
    log.info({ runId: spec.runId, project: spec.project, exitCode }, 'one-off run ended');
  }

  private apply(run: ActiveRun, m: RunInputMessage, act: { stdin(data: string, seq: number): void; ack(bytes: number): void; kill(why: string): void }): void {
    switch (m.kind) {
      case 'stdin':
        return act.stdin(m.data, m.seq);
      case 'eof':
        run.cmd.stdin?.end();
        return;
      case 'ack':
        return act.ack(m.bytes);
      case 'resize':
        if (run.spec.tty) run.resizing = run.resizing.then(() => this.resize(run.cmd.handle, m.rows, m.cols));
        return;
      case 'signal':
        void this.o.driver.signal(run.cmd.handle, m.signal);
        return;
      case 'kill':
        return act.kill('the controller asked (the job was aborted or its client went away)');
      case 'alive':
        return;
    }
  }

  /**
   * Sets the size of the run's terminal: the pseudo-terminal `script` made is the stdin of its processes; stty on it
   * sets the size and the kernel sends SIGWINCH to whatever runs in the foreground there.
   */
  private async resize(handle: TaskHandle, rows: number, cols: number): Promise<void> {
    const find = async () => (await this.o.driver.processes(handle)).map((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/0`);
      } catch {
        return null;
      }
    }).find((p): p is string => !!p && /^\/dev\/pts\/\d+$/.test(p));
    // A resize right after the start may come before `script` has made the terminal: look again for a little while.
    let pts = await find();
    for (let tries = 0; !pts && tries < 30; tries++) {
      await new Promise((r) => setTimeout(r, 100));
      if (!(await this.o.driver.inspect(handle)).alive) return;
      pts = await find();
    }
    if (!pts) return;
    await new Promise<void>((resolve) => {
      const child = spawn('stty', ['-F', pts, 'rows', String(rows), 'cols', String(cols)], { stdio: 'ignore' });
      child.once('error', (err) => { log.debug({ err }, 'stty for a resize could not run'); resolve(); });
      child.once('exit', () => resolve());
    });
  }

  private pidFile(runId: string): string {
    return join(this.o.dir, `${runId}.pid`);
  }

  /** At agent start: kills runs a previous agent process left running when it died (their whole cgroup or tree). */
  async reapOrphans(): Promise<number> {
    this.stopping = false;
    let names: string[] = [];
    try {
      names = readdirSync(this.o.dir);
    } catch {
      return 0;
    }
    let reaped = 0;
    for (const name of names.filter((n) => n.endsWith('.pid'))) {
      const file = join(this.o.dir, name);
      try {
        const h = JSON.parse(readFileSync(file, 'utf8')) as TaskHandle;
        if (Number.isInteger(h.pid) && h.pid > 1 && Number.isInteger(h.startTime)) {
          const handle = { ...h, driver: this.o.driver.name };
          if ((await this.o.driver.processes(handle)).length) reaped++;
          await this.o.driver.destroy(handle);
        }
      } catch (err) {
        log.warn({ err, file }, 'the pid file of a one-off run left by an earlier agent could not be used; whatever it named is not killed');
      }
      rmSync(file, { force: true });
    }
    return reaped;
  }

  /** Kills every run (agent shutdown); each says so in its exit message. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.runs.values()].map((r) => {
      r.killedBecause ??= 'the agent is stopping';
      return r.cmd.kill();
    }));
  }
}

/** Whether `name` is an executable in one of PATH's directories. */
function onPath(name: string, path = '/usr/local/bin:/usr/bin:/bin'): boolean {
  return path.split(':').some((dir) => {
    try {
      accessSync(join(dir || '.', name), fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
