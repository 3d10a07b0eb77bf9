// `enjin run [--service S] -- CMD ARGS…`: a one-off process in the project's current release on a node, its output
// streamed, stdin passed through (a terminal of its own when ours is one), and its exit code ours.
import type { Command } from 'commander';
import WebSocket from 'ws';
import { EnjinError } from '../../core/errors.ts';
import { OUTPUT_STDERR, type RunClientMessage, type RunServerMessage } from '../../core/run-protocol.ts';
import { client, globals } from '../program.ts';
import { projectName } from '../project-name.ts';

interface RunOptions {
  project?: string;
  service?: string;
  /** false with --no-tty */
  tty: boolean;
}

/** What `--json` prints when the run has ended. */
interface RunResult {
  job: string | null;
  state: string | null;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  error: string | null;
}

/** stdin bytes in flight to the controller before we stop reading ours */
const STDIN_AHEAD_BYTES = 1024 * 1024;

export function registerRun(program: Command): void {
  program
    .command('run')
    .description("run a one-off command in the project's current release, on a node: `enjin run -- CMD ARGS…` (a terminal when yours is one); exits with its code")
    .argument('<command...>', 'the command: one word is a shell command line (`enjin run \'echo $HOME\'`), several are passed as they are')
    .option('-p, --project <name>', 'project')
    .option('-s, --service <name>', "whose environment the command gets (default: web, else the project's first service)")
    .option('-T, --no-tty', 'plain pipes even when stdin is a terminal')
    .action(async (command: string[], o: RunOptions) => {
      const c = client();
      const project = await projectName(o.project, c);
      const json = globals().json === true;
      const tty = !json && o.tty && process.stdin.isTTY === true;
      const result = await runRemote(c.creds, project, { command, service: o.service, tty, json });
      if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else if (result.exitCode === null || result.state === 'aborted') process.stderr.write(`enjin: ${result.error ?? `the run ${result.state}`}${result.job ? ` (job ${result.job})` : ''}\n`);
      process.exitCode = result.exitCode ?? 1;
    });
}

async function runRemote(creds: { api: string; token: string }, project: string, o: { command: string[]; service?: string; tty: boolean; json: boolean }): Promise<RunResult> {
  const url = `${creds.api.replace(/^http/, 'ws')}/v1/projects/${encodeURIComponent(project)}/run`;
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${creds.token}` }, maxPayload: 8 * 1024 * 1024 });
  const result: RunResult = { job: null, state: null, exitCode: null, stdout: '', stderr: '', error: null };
  const stdin = process.stdin;
  let rawMode = false;
  let interrupts = 0;
  const onSigint = () => {
    // Without a terminal of its own the process hears Ctrl-C from us; a second one gives up on it (which kills it).
    if (++interrupts === 1 && ws.readyState === ws.OPEN) send({ type: 'signal', signal: 'SIGINT' });
    else ws.terminate();
  };
  // A terminal that does not know its size (0×0, as a fresh pty) gets the classic 24×80.
  const size = () => ({ rows: process.stdout.rows || 24, cols: process.stdout.columns || 80 });
  const onResize = () => send({ type: 'resize', ...size() });
  const send = (m: RunClientMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
  };
  const restore = () => {
    if (rawMode) stdin.setRawMode(false);
    rawMode = false;
    process.off('SIGINT', onSigint);
    process.stdout.off('resize', onResize);
    stdin.off('data', onStdin);
    stdin.off('end', onStdinEnd);
    // Nothing of ours is left to read: the CLI may exit (a terminal's stdin is only paused, never closed).
    if (stdin.isTTY) stdin.pause();
    else stdin.destroy();
  };
  const onStdin = (data: Buffer) => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(data, { binary: true }, () => { if (ws.bufferedAmount < STDIN_AHEAD_BYTES) stdin.resume(); });
    if (ws.bufferedAmount >= STDIN_AHEAD_BYTES) stdin.pause();
  };
  const onStdinEnd = () => send({ type: 'eof' });

  return await new Promise<RunResult>((resolve, reject) => {
    let settled = false;
    const finish = (err: EnjinError | null) => {
      if (settled) return;
      settled = true;
      restore();
      if (err) reject(err);
      else resolve(result);
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
    };
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString('utf8'); });
      res.on('end', () => {
        let err: EnjinError;
        try {
          err = EnjinError.fromJSON((JSON.parse(body) as { error: unknown }).error, res.statusCode ?? 500);
        } catch {
          err = new EnjinError('bad_response', `the controller refused the run: HTTP ${res.statusCode} ${body.slice(0, 200)}`, { status: res.statusCode ?? 500 });
        }
        finish(err);
      });
    });
    ws.on('error', (err) => finish(new EnjinError('controller_unreachable', `cannot reach the enjin API at ${creds.api} (${err.message}); is \`enjin up\` running?`, { status: 503 })));
    ws.on('open', () => {
      send({ type: 'start', command: o.command, service: o.service, tty: o.tty ? { ...size(), term: process.env.TERM || 'xterm' } : null });
      if (o.tty) {
        stdin.setRawMode(true);
        rawMode = true;
        process.stdout.on('resize', onResize);
      } else if (!o.json || !stdin.isTTY) {
        process.on('SIGINT', onSigint);
      }
      // With --json on a terminal nobody types into the command: it gets no input (an immediate EOF).
      if (o.json && stdin.isTTY) send({ type: 'eof' });
      else {
        stdin.on('data', onStdin);
        stdin.on('end', onStdinEnd);
        stdin.resume();
      }
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        const chunk = data.subarray(1);
        const toErr = data[0] === OUTPUT_STDERR;
        if (o.json) {
          if (toErr) result.stderr += chunk.toString('utf8');
          else result.stdout += chunk.toString('utf8');
          return;
        }
        const out = toErr ? process.stderr : process.stdout;
        // A slow terminal or pipe slows the process down rather than filling our memory.
        if (!out.write(chunk)) {
          ws.pause();
          out.once('drain', () => ws.resume());
        }
        return;
      }
      const m = JSON.parse(data.toString('utf8')) as RunServerMessage;
      switch (m.type) {
        case 'job':
          result.job = m.job;
          if (m.prepare && !o.json) process.stderr.write(`preparing ${project} ${m.version} on ${m.node} first…\n`);
          break;
        case 'progress':
          if (!o.json) process.stderr.write(`  ${m.line}\n`);
          break;
        case 'notice':
          if (!o.json) process.stderr.write(`enjin: ${m.message}\n`);
          break;
        case 'exit':
          Object.assign(result, { job: m.job, state: m.state, exitCode: m.exitCode, error: m.error });
          finish(null);
          break;
        case 'error':
          finish(EnjinError.fromJSON(m.error, 400));
          break;
        default:
          break;
      }
    });
    ws.on('close', () => finish(result.state ? null : new EnjinError('run_interrupted', `the connection to the controller closed before the run ended${result.job ? ` (see \`enjin jobs show ${result.job}\`)` : ''}`, { status: 502 })));
  });
}
