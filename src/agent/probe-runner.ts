// One health probe of an instance, bounded by a timeout: an HTTP GET (2xx/3xx, optional body text and Host header), a
// TCP connect, or a shell command run like the instance (its directory, environment and user). The result says why in
// words a user can act on; a command's output is captured and capped.
import { request } from 'node:http';
import { connect } from 'node:net';
import type { HealthSpec } from '../core/model.ts';
import type { Driver } from './drivers/driver.ts';

/** What a probe needs of the instance it checks. */
export interface ProbeTarget {
  /** where its port is reached from the agent */
  host: string;
  port: number | null;
  /** for a command probe: run as the instance runs */
  cwd: string;
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  /** names the command probe's process for the driver (its cgroup): unique per instance */
  commandId: string;
}

export interface ProbeOutcome {
  ok: boolean;
  output: string;
  durationMs: number;
}

/** The part of the health check that says what to probe. */
export type ProbeCheck = Pick<HealthSpec, 'http' | 'expect' | 'host' | 'tcp' | 'command'>;

/** Bytes of a probe's output (a command's, an HTTP body searched for `expect`) kept: the last ones. */
export const PROBE_OUTPUT_CAP = 4096;
const BODY_CAP = 64 * 1024;

/** What kind of probe a check asks for; null: nothing to probe (no port to connect to, no command). */
export function probeKind(check: ProbeCheck, listens: boolean): 'http' | 'tcp' | 'command' | null {
  if (check.command) return 'command';
  if (check.http && listens) return 'http';
  if (listens) return 'tcp';
  return null;
}

export async function runProbe(check: ProbeCheck, target: ProbeTarget, timeoutMs: number, driver: Driver): Promise<ProbeOutcome> {
  const started = Date.now();
  const kind = probeKind(check, target.port !== null);
  let r: { ok: boolean; output: string };
  if (kind === 'command') r = await commandProbe(check.command!, target, timeoutMs, driver);
  else if (kind === 'http') r = await httpCheck(target.host, target.port!, check.http!, timeoutMs, check.expect, check.host);
  else if (kind === 'tcp') r = await tcpCheck(target.host, target.port!, timeoutMs);
  else r = { ok: true, output: 'nothing to probe' };
  return { ...r, durationMs: Date.now() - started };
}

const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

export function tcpCheck(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean, output: string): void => {
      socket.destroy();
      resolve({ ok, output });
    };
    socket.setTimeout(timeoutMs, () => done(false, `no connection to port ${port} within ${seconds(timeoutMs)}`));
    socket.once('connect', () => done(true, `port ${port} accepts connections`));
    socket.once('error', (err: NodeJS.ErrnoException) => done(false, `connecting to port ${port}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.code ?? err.message}`));
  });
}

/** Characters of a failing HTTP answer's body kept in the probe's output. */
const FAILED_BODY_EXCERPT = 200;

export function httpCheck(host: string, port: number, path: string, timeoutMs: number, expect?: string, hostHeader?: string): Promise<{ ok: boolean; output: string }> {
  const target = path.startsWith('/') ? path : `/${path}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, output: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ok, output });
    };
    // No connection pooling: a probe must not keep sockets open to the instance between checks.
    const req = request({
      host, port, path: target, method: 'GET', agent: false,
      headers: { connection: 'close', 'user-agent': 'enjin-agent', ...(hostHeader ? { host: hostHeader } : {}) },
    });
    const timer = setTimeout(() => done(false, `GET ${target} on port ${port}: no answer within ${seconds(timeoutMs)}`), timeoutMs);
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      const good = status >= 200 && status < 400;
      let body = '';
      if (!good) {
        // A failing answer's body is what tells a user why ("database unreachable"): its first bytes go with it.
        const failed = () => {
          const excerpt = body.slice(0, FAILED_BODY_EXCERPT).replace(/\s+/g, ' ').trim();
          done(false, `HTTP ${status} from ${target}${excerpt ? `: ${excerpt}` : ''}`);
        };
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
          if (body.length >= FAILED_BODY_EXCERPT) failed();
        });
        res.once('end', failed);
        res.once('error', failed);
        return;
      }
      if (expect === undefined) {
        res.resume();
        return done(true, `HTTP ${status} from ${target}`);
      }
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (body.includes(expect)) done(true, `HTTP ${status} from ${target}`);
        else if (body.length > BODY_CAP) done(false, `HTTP ${status} from ${target}, but the first ${BODY_CAP} bytes of its body do not contain ${JSON.stringify(expect)}`);
      });
      res.once('end', () => done(body.includes(expect), `HTTP ${status} from ${target}${body.includes(expect) ? '' : `, but its body does not contain ${JSON.stringify(expect)}: ${JSON.stringify(body.slice(0, 200))}`}`));
      res.once('error', (err) => done(false, `GET ${target} on port ${port}: ${err.message}`));
    });
    req.once('error', (err: NodeJS.ErrnoException) => done(false, `GET ${target} on port ${port}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.code ?? err.message}`));
    req.end();
  });
}

/** Keeps the last PROBE_OUTPUT_CAP bytes written to it. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;

  add(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0].length >= PROBE_OUTPUT_CAP) this.size -= this.chunks.shift()!.length;
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - PROBE_OUTPUT_CAP)).toString('utf8').trimEnd();
  }
}

async function commandProbe(command: string, target: ProbeTarget, timeoutMs: number, driver: Driver): Promise<{ ok: boolean; output: string }> {
  let running;
  try {
    running = await driver.run({
      id: target.commandId, command, cwd: target.cwd, env: target.env,
      ...(target.uid !== undefined ? { uid: target.uid, gid: target.gid } : {}),
    });
  } catch (err) {
    return { ok: false, output: `the health command could not start: ${(err as Error).message}` };
  }
  const tail = new OutputTail();
  running.stdout.on('data', (c: Buffer) => tail.add(c));
  running.stderr.on('data', (c: Buffer) => tail.add(c));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const exit = await Promise.race([running.exited, timedOut]);
  clearTimeout(timer);
  if (exit === 'timeout') {
    // Nothing of a probe outlives it: a hung check would pile up one process per interval.
    await running.kill();
    const out = tail.text();
    return { ok: false, output: `\`${command}\` did not finish within ${seconds(timeoutMs)}${out ? `: ${out}` : ''}` };
  }
  const out = tail.text();
  if (exit.code === 0) return { ok: true, output: out || `\`${command}\` exited with code 0` };
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  return { ok: false, output: `\`${command}\` ${how}${out ? `: ${out}` : ''}` };
}
