// One `enjin run` in flight: joins the client's connection to the agent's per-run subjects. Output goes to the client
// (and, capped, to the job's log) in order, with loss noticed by sequence numbers; stdin goes the other way; neither
// side reads further ahead of the other than a window; the process is killed when the job is aborted, the client goes
// away, or the node stops answering.
import type { Bus, Subscription } from '../bus/bus.ts';
import { EnjinError } from '../core/errors.ts';
import type { Job } from '../core/model.ts';
import { subjects, type AgentReply } from '../core/messages.ts';
import { RUN_CHUNK_MAX_BYTES, type OneOffRunSpec, type RunInputMessage, type RunOutputMessage } from '../core/run-messages.ts';
import type { RunServerMessage } from '../core/run-protocol.ts';
import { componentLogger } from '../log/logger.ts';
import type { JobEngine } from './jobs/engine.ts';

const slog = componentLogger('controller');

/** The client end of a run (a WebSocket in api/routes/run.ts). */
export interface RunClient {
  send(msg: RunServerMessage): void;
  /** the process's output; `sent` once it is handed to the connection (what the agent's window waits for) */
  output(stream: 'stdout' | 'stderr', data: Buffer, sent: () => void): void;
  /** stop / go on reading the client's stdin (the process is not taking it as fast as it comes) */
  pauseInput(): void;
  resumeInput(): void;
  /** closes the connection once what was sent is out */
  close(): void;
}

export interface RunSessionOptions {
  bus: Bus;
  jobs: JobEngine;
  client: RunClient;
  runId: string;
  nodeId: string;
  nodeName: string;
  nodeReady(): boolean;
  spec: OneOffRunSpec;
  describe: { service: string; version: string; node: string; prepare: boolean };
}

/** How much of a run's output its job log keeps: its head and its tail, with a line saying what was left out. */
export const RUN_LOG_MAX_BYTES = 1024 * 1024;
export const RUN_LOG_MAX_LINES = 10_000;
/** stdin bytes sent to the agent and not yet taken by the process, before the client's stdin is paused */
const STDIN_WINDOW_BYTES = 1024 * 1024;
const KEEPALIVE_MS = 5000;
/** a node not heard from this long while it runs a process has lost it */
const NODE_SILENCE_MS = 30_000;
/** how long a killed run's exit is waited for before the job ends without it */
const KILL_WAIT_MS = 15_000;
const START_TIMEOUT_MS = 60_000;

export class RunSession {
  private readonly o: RunSessionOptions;
  private started = false;
  private clientGone = false;
  private exit: Extract<RunOutputMessage, { kind: 'exit' }> | null = null;
  /** stdin chunks that came before the process started */
  private pending: Array<Buffer | 'eof'> = [];
  private pendingBytes = 0;
  private stdinSeq = 0;
  private stdinSent = 0;
  private stdinTaken = 0;
  private inputPaused = false;
  private wake: (() => void) | null = null;
  private jobId = '';

  constructor(o: RunSessionOptions) {
    this.o = o;
  }

  // ---- from the client ------------------------------------------------------------------------------------------

  stdin(data: Buffer): void {
    if (this.exit || this.clientGone) return;
    if (!this.started) {
      this.pending.push(data);
      this.pendingBytes += data.length;
      this.throttleInput();
      return;
    }
    for (let at = 0; at < data.length; at += RUN_CHUNK_MAX_BYTES) {
      const piece = data.subarray(at, at + RUN_CHUNK_MAX_BYTES);
      this.toAgent({ kind: 'stdin', seq: ++this.stdinSeq, data: piece.toString('base64') });
      this.stdinSent += piece.length;
    }
    this.throttleInput();
  }

  eof(): void {
    if (!this.started) this.pending.push('eof');
    else this.toAgent({ kind: 'eof' });
  }

  resize(rows: number, cols: number): void {
    if (this.started) this.toAgent({ kind: 'resize', rows, cols });
  }

  signal(signal: 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'SIGQUIT'): void {
    if (this.started) this.toAgent({ kind: 'signal', signal });
  }

  /** The client went away: a process nobody watches is killed (there is nobody to answer it). */
  disconnected(): void {
    if (this.clientGone) return;
    this.clientGone = true;
    if (this.started && !this.exit) this.toAgent({ kind: 'kill' });
    this.wake?.();
  }

  private throttleInput(): void {
    const ahead = this.started ? this.stdinSent - this.stdinTaken : this.pendingBytes;
    if (!this.inputPaused && ahead > STDIN_WINDOW_BYTES) {
      this.inputPaused = true;
      this.o.client.pauseInput();
    } else if (this.inputPaused && ahead <= STDIN_WINDOW_BYTES) {
      this.inputPaused = false;
      this.o.client.resumeInput();
    }
  }

  private toAgent(m: RunInputMessage): void {
    this.o.bus.publish(subjects.runInput(this.o.nodeId, this.o.runId), m);
  }

  // ---- the job tree ---------------------------------------------------------------------------------------------

  /** Tells the client about the tree, passes its prepare's log on as progress, and reports how it ended. */
  async follow(root: Job): Promise<void> {
    const { client, jobs, describe } = this.o;
    this.jobId = root.id;
    client.send({ type: 'job', job: root.id, ...describe });
    const onLog = (entry: { jobId: string; rootId: string; line: string }) => {
      if (entry.rootId === root.id && entry.jobId !== root.id) client.send({ type: 'progress', line: entry.line });
    };
    jobs.events.on('log', onLog);
    let ended: Job;
    try {
      ended = await jobs.wait(root.id);
    } finally {
      jobs.events.off('log', onLog);
    }
    client.send({ type: 'exit', job: root.id, state: ended.state, exitCode: this.exit?.exitCode ?? null, error: ended.error });
    client.close();
  }

  /** The `run` job's action: starts the process on its node and passes everything through until it exits. */
  async execute(log: (line: string) => void, signal: AbortSignal): Promise<void> {
    const o = this.o;
    if (this.clientGone) throw new EnjinError('run_interrupted', 'the client went away before the process started; nothing was run', { status: 410 });
    const output = new OutputLog(log);
    let expectedSeq = 1;
    let forwarded = 0;
    let heardAt = Date.now();
    const sub: Subscription = o.bus.subscribe(subjects.runOutput(o.nodeId, o.runId), (msg) => {
      // Only the node running it speaks for a run (signed buses name the sender).
      if (msg.sender !== null && msg.sender !== o.nodeId) {
        slog.warn({ runId: o.runId, sender: msg.sender }, 'dropped run output sent by another node');
        return;
      }
      heardAt = Date.now();
      const m = msg.data as RunOutputMessage;
      if (m?.kind === 'alive') return;
      if (m?.kind === 'stdin-ack') {
        if (Number.isSafeInteger(m.bytes)) this.stdinTaken = Math.max(this.stdinTaken, m.bytes);
        this.throttleInput();
        return;
      }
      if ((m?.kind !== 'output' && m?.kind !== 'exit') || !Number.isSafeInteger(m.seq)) return;
      if (m.seq < expectedSeq) return; // a repeat
      if (m.seq > expectedSeq) {
        const lost = `${m.seq - expectedSeq} chunk(s) of output were lost on the bus`;
        log(lost);
        o.client.send({ type: 'notice', message: lost });
      }
      expectedSeq = m.seq + 1;
      if (m.kind === 'exit') {
        this.exit = m;
        this.wake?.();
        return;
      }
      const data = Buffer.from(typeof m.data === 'string' ? m.data : '', 'base64');
      output.add(data);
      const stream = m.stream === 'stderr' ? 'stderr' : 'stdout';
      if (this.clientGone) return;
      o.client.output(stream, data, () => {
        forwarded += data.length;
        this.toAgent({ kind: 'ack', bytes: forwarded });
      });
    });
    const keepalive = setInterval(() => {
      this.toAgent({ kind: 'alive' });
      this.wake?.();
    }, KEEPALIVE_MS);
    const onAbort = () => {
      if (this.started) this.toAgent({ kind: 'kill' });
      this.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const { spec } = o;
      log(`running \`${spec.command}\` as ${spec.service} of ${spec.project} ${o.describe.version} on ${o.nodeName}${spec.tty ? ' with a terminal' : ''}`);
      const reply = await o.bus.request<AgentReply>(subjects.agentRpc(o.nodeId), { op: 'run', run: spec }, { timeoutMs: START_TIMEOUT_MS });
      if (reply.op !== 'run') throw new EnjinError('bad_reply', `node ${o.nodeName} answered a run with ${reply.op}`, { status: 502 });
      this.started = true;
      heardAt = Date.now();
      log(`started: pid ${reply.pid}`);
      o.client.send({ type: 'started', pid: reply.pid });
      if (this.clientGone || signal.aborted) this.toAgent({ kind: 'kill' });
      for (const p of this.pending.splice(0)) {
        if (p === 'eof') this.eof();
        else this.stdin(p);
      }
      this.pendingBytes = 0;
      // Until the node says it exited: an abort or a lost client kills it, and its exit still comes (within reason).
      let killedAt: number | null = null;
      while (!this.exit) {
        if ((signal.aborted || this.clientGone) && killedAt === null) killedAt = Date.now();
        if (killedAt !== null && Date.now() - killedAt > KILL_WAIT_MS) break;
        if (Date.now() - heardAt > NODE_SILENCE_MS || !o.nodeReady()) {
          throw new EnjinError('run_interrupted', `node ${o.nodeName} stopped answering while it ran the process; it kills the process when it notices the controller is gone`, { status: 504 });
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 1000).unref();
        });
        this.wake = null;
      }
    } finally {
      clearInterval(keepalive);
      signal.removeEventListener('abort', onAbort);
      sub.unsubscribe();
      output.end();
    }
    if (signal.aborted) throw signal.reason;
    const exit = this.exit;
    if (this.clientGone) throw new EnjinError('run_interrupted', 'the client disconnected: the process and everything it started were killed', { status: 410 });
    if (!exit) throw new EnjinError('run_interrupted', `node ${o.nodeName} did not report the end of the process`, { status: 504 });
    const how = exit.signal ? `was killed by ${exit.signal} (exit status ${exit.exitCode})` : `exited with code ${exit.exitCode}`;
    log(`${exit.message ? `${exit.message}; ` : ''}the process ${how}`);
    if (exit.exitCode !== 0) throw new EnjinError('run_failed', `\`${o.spec.command}\` ${how}`, { status: 422 });
  }

  get job(): string {
    return this.jobId;
  }
}

/**
 * The output as job log lines, at most RUN_LOG_MAX_BYTES and RUN_LOG_MAX_LINES of it: the head live (a quarter), then
 * the tail, kept in memory as it rolls and written when the run ends, with a line saying how much was left out
 * between. Terminal line endings and NULs are taken out.
 */
class OutputLog {
  private partial = '';
  private headBytes = 0;
  private headLines = 0;
  private tail: string[] = [];
  private tailBytes = 0;
  private skippedBytes = 0;
  private skippedLines = 0;

  constructor(private readonly log: (line: string) => void) {}

  add(data: Buffer): void {
    const lines = (this.partial + data.toString('utf8')).split('\n');
    this.partial = lines.pop() ?? '';
    // A line that never ends is cut into pieces rather than held without bound.
    while (this.partial.length > MAX_LINE_CHARS) {
      lines.push(this.partial.slice(0, MAX_LINE_CHARS));
      this.partial = this.partial.slice(MAX_LINE_CHARS);
    }
    for (const line of lines) this.line(clean(line));
  }

  private line(line: string): void {
    const size = Buffer.byteLength(line) + 1;
    if (this.headBytes + size <= RUN_LOG_MAX_BYTES / 4 && this.headLines < RUN_LOG_MAX_LINES / 4) {
      this.headBytes += size;
      this.headLines++;
      this.log(line);
      return;
    }
    this.tail.push(line);
    this.tailBytes += size;
    while (this.tail.length && (this.tailBytes > (RUN_LOG_MAX_BYTES * 3) / 4 || this.tail.length > (RUN_LOG_MAX_LINES * 3) / 4)) {
      const dropped = this.tail.shift()!;
      this.tailBytes -= Buffer.byteLength(dropped) + 1;
      this.skippedBytes += Buffer.byteLength(dropped) + 1;
      this.skippedLines++;
    }
  }

  end(): void {
    if (this.partial) this.line(clean(this.partial));
    this.partial = '';
    if (this.skippedLines) this.log(`… ${this.skippedLines} line(s) (${this.skippedBytes} bytes) of output not kept in this log …`);
    for (const line of this.tail.splice(0)) this.log(line);
    this.tailBytes = 0;
  }
}

const MAX_LINE_CHARS = 4000;
const clean = (line: string): string => line.replace(/\r+$/, '').replace(/\0/g, '');
