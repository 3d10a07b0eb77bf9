// The agent's one-off runs with real processes on an in-memory bus: output in order with sequence numbers and the
// exit last, stdin and EOF, a terminal from `script`, kill and controller silence ending the whole process tree,
// flow control, and specs from the bus checked before anything runs.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBus } from '../bus/memory.ts';
import { subjects } from '../core/messages.ts';
import type { OneOffRunSpec, RunInputMessage, RunOutputMessage } from '../core/run-messages.ts';
import { ProcessDriver, isAlive, readProcStat } from './drivers/process.ts';
import { OneOffRunner } from './one-off.ts';
import { exitStatus, runCommandLine } from './one-off-spec.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-one-off-'));
chmodSync(root, 0o755);
const build = join(root, 'build');
mkdirSync(build, { recursive: true });
writeFileSync(join(build, 'marker.txt'), 'in the build\n');
mkdirSync(join(build, '.venv', 'bin'), { recursive: true });
const bus = new MemoryBus();
const driver = new ProcessDriver();
const runner = new OneOffRunner({
  nodeId: 'n1', bus, driver, dir: join(root, 'runs'),
  preparedDir: (id) => (id === 'v1' ? build : null),
  account: () => ({ home: root }),
  baseEnv: () => ({ PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' }),
  windowBytes: 64 * 1024,
  keepaliveMs: 100,
  silenceMs: 1500,
});

after(async () => {
  await runner.stop();
  await bus.close();
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
function spec(command: string, extra: Partial<OneOffRunSpec> = {}): OneOffRunSpec {
  return {
    runId: `run_t${++n}`, project: 'p', service: 'web', command, tty: null, env: { ENJIN_PROJECT: 'p', SECRET: 's3' },
    version: { versionId: 'v1', project: 'p', sha256: 'a'.repeat(64), size: 1, prepare: [], env: {}, paths: ['.venv/bin'], pathEnv: { VIRTUAL_ENV: '.venv' } },
    ...extra,
  };
}

/** Starts a run and collects what it sends; `ack` acknowledges output as a controller would (false: never). */
async function start(s: OneOffRunSpec, opts: { ack?: boolean; alive?: boolean } = {}) {
  const messages: RunOutputMessage[] = [];
  let stdout = '';
  let stderr = '';
  let acked = 0;
  const send = (m: RunInputMessage) => bus.publish(subjects.runInput('n1', s.runId), m);
  let resolveExit!: (m: Extract<RunOutputMessage, { kind: 'exit' }>) => void;
  const exited = new Promise<Extract<RunOutputMessage, { kind: 'exit' }>>((r) => (resolveExit = r));
  bus.subscribe(subjects.runOutput('n1', s.runId), (msg) => {
    const m = msg.data as RunOutputMessage;
    messages.push(m);
    if (m.kind === 'output') {
      const text = Buffer.from(m.data, 'base64').toString('utf8');
      if (m.stream === 'stdout') stdout += text;
      else stderr += text;
      acked += Buffer.from(m.data, 'base64').length;
      if (opts.ack !== false) send({ kind: 'ack', bytes: acked });
    }
    if (m.kind === 'exit') resolveExit(m);
  });
  const keep = opts.alive === false ? null : setInterval(() => send({ kind: 'alive' }), 100);
  const pid = await runner.start(s);
  const startTime = readProcStat(pid)?.startTime ?? -1;
  void exited.then(() => keep && clearInterval(keep));
  return { pid, startTime, messages, exited, send, out: () => ({ stdout, stderr }) };
}

test('output streams in order with sequence numbers, the exit comes last with its code, in the release environment', async () => {
  const r = await start(spec('echo "$ENJIN_PROJECT $SECRET $VIRTUAL_ENV"; echo $PATH; cat marker.txt; echo oops >&2; exit 7'));
  const exit = await r.exited;
  assert.equal(exit.exitCode, 7);
  assert.equal(exit.code, 7);
  const { stdout, stderr } = r.out();
  assert.match(stdout, new RegExp(`^p s3 ${build}/.venv$`, 'm'));
  assert.match(stdout, new RegExp(`^${build}/.venv/bin:/usr/local/bin`, 'm'), "the builder's paths come first");
  assert.match(stdout, /^in the build$/m, 'it runs in the build directory');
  assert.equal(stderr, 'oops\n');
  const seqs = r.messages.filter((m) => m.kind === 'output' || m.kind === 'exit').map((m) => (m as { seq: number }).seq);
  assert.deepEqual(seqs, seqs.map((_, k) => k + 1), 'seq counts 1, 2, … and the exit is the last');
  assert.equal(r.messages.filter((m) => m.kind === 'exit').length, 1);
});

test('stdin is passed through and EOF closes it', async () => {
  const r = await start(spec('cat; echo done'));
  r.send({ kind: 'stdin', seq: 1, data: Buffer.from('hello ').toString('base64') });
  r.send({ kind: 'stdin', seq: 2, data: Buffer.from('world\n').toString('base64') });
  r.send({ kind: 'eof' });
  const exit = await r.exited;
  assert.equal(exit.exitCode, 0);
  assert.equal(r.out().stdout, 'hello world\ndone\n');
  assert.ok(r.messages.some((m) => m.kind === 'stdin-ack' && m.bytes === 12), 'the bytes the process took are acknowledged');
});

test('with a terminal: `script` gives the process a pty of the asked size, and input typed is answered', async () => {
  const r = await start(spec('sh', { tty: { rows: 33, cols: 101, term: 'xterm' } }));
  r.send({ kind: 'stdin', seq: 1, data: Buffer.from('tty; stty size; echo "term=$TERM"; echo $((6*7)); exit 3\n').toString('base64') });
  const exit = await r.exited;
  assert.equal(exit.exitCode, 3);
  const out = r.out().stdout;
  assert.match(out, /\/dev\/pts\/\d+/);
  assert.match(out, /^33 101\r?$/m);
  assert.match(out, /^term=xterm\r?$/m);
  assert.match(out, /^42\r?$/m);
});

test('a resize reaches the terminal of a running process', async () => {
  const r = await start(spec('sh', { tty: { rows: 24, cols: 80, term: 'xterm' } }));
  r.send({ kind: 'resize', rows: 40, cols: 120 });
  let seq = 0;
  // stty runs beside the process: ask for the size until it shows the new one.
  while (!/^40 120\r?$/m.test(r.out().stdout)) {
    r.send({ kind: 'stdin', seq: ++seq, data: Buffer.from('stty size\n').toString('base64') });
    await new Promise((res) => setTimeout(res, 100));
  }
  r.send({ kind: 'stdin', seq: ++seq, data: Buffer.from('exit 0\n').toString('base64') });
  assert.equal((await r.exited).exitCode, 0);
});

test('several words run as they are, as the process itself: a signal it handles is its own', async () => {
  const r = await start(spec('ignored', { argv: ['sh', '-c', 'trap "echo got-int; exit 5" INT; echo ready; while :; do sleep 0.1; done'] }));
  while (!/ready/.test(r.out().stdout)) await new Promise((res) => setTimeout(res, 20));
  r.send({ kind: 'signal', signal: 'SIGINT' });
  const exit = await r.exited;
  assert.equal(exit.exitCode, 5);
  assert.match(r.out().stdout, /got-int/);
  const quoted = await start(spec('ignored', { argv: ['printf', '%s|', 'a b', "it's", '$HOME'] }));
  await quoted.exited;
  assert.equal(quoted.out().stdout, "a b|it's|$HOME|");
});

test('a signal death exits 128+N; a kill ends the process and everything it started', async () => {
  const term = await start(spec('kill -TERM $$'));
  assert.equal((await term.exited).exitCode, 143);

  const pidFile = join(root, 'child.pid');
  const killed = spec(`(sleep 1000 & echo $! > ${pidFile}; wait) & wait`);
  const r = await start(killed);
  assert.equal(existsSync(join(root, 'runs', `${killed.runId}.pid`)), true, 'a pid file is kept while it runs');
  await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '');
  const child = Number(readFileSync(pidFile, 'utf8'));
  const startTime = readProcStat(child)!.startTime;
  r.send({ kind: 'kill' });
  const exit = await r.exited;
  assert.notEqual(exit.exitCode, 0);
  assert.match(exit.message ?? '', /killed: the controller asked/);
  assert.equal(isAlive(child, startTime), false, 'the grandchild died with the run');
  assert.equal(existsSync(join(root, 'runs', `${killed.runId}.pid`)), false);
});

test('a run its controller stops talking to is killed', async () => {
  const r = await start(spec('sleep 1000'), { alive: false });
  const exit = await r.exited;
  assert.match(exit.message ?? '', /controller stopped answering/);
  assert.ok(r.startTime > 0);
  assert.equal(isAlive(r.pid, r.startTime), false);
});

test('output is read no further ahead than the window until acknowledged', async () => {
  const r = await start(spec('head -c 1000000 /dev/zero'), { ack: false });
  // Unacknowledged, the runner stops reading after the window (plus at most one chunk).
  await waitFor(() => r.messages.filter((m) => m.kind === 'output').length > 0);
  await new Promise((res) => setTimeout(res, 300));
  const sent = () => r.messages.filter((m) => m.kind === 'output').reduce((s, m) => s + Buffer.from((m as { data: string }).data, 'base64').length, 0);
  assert.ok(sent() <= 64 * 1024 + 64 * 1024 * 2, `sent ${sent()} bytes without an ack`);
  r.send({ kind: 'ack', bytes: 1_000_000 });
  // Now acknowledge everything as it comes.
  const ackAll = setInterval(() => r.send({ kind: 'ack', bytes: sent() }), 20);
  const exit = await r.exited;
  clearInterval(ackAll);
  assert.equal(exit.exitCode, 0);
  assert.equal(sent(), 1_000_000);
});

test('specs from the bus are checked before anything runs', async () => {
  await assert.rejects(runner.start({ ...spec('true'), runId: 'a.b' }), /must not contain '\.'/);
  await assert.rejects(runner.start({ ...spec('true'), env: { X: 1 } as never }), /env must map names to strings/);
  await assert.rejects(runner.start({ ...spec('true'), tty: { rows: 0, cols: 80, term: 'xterm' } }), /tty must be null/);
  await assert.rejects(runner.start({ ...spec('true'), tty: { rows: 24, cols: 80, term: 'x; rm -rf /' } }), /tty must be null/);
  await assert.rejects(runner.start(spec('true', { version: { ...spec('true').version, versionId: 'v2' } })), /not prepared on this node/);
  await assert.rejects(runner.start({ ...spec('true'), command: ' ' }), /has no command/);
  assert.equal(runner.size, 0);
});

test('the command line: a terminal goes through script, and exit statuses read like a shell\'s', () => {
  assert.equal(runCommandLine({ command: 'ls -l', tty: null }), 'ls -l');
  assert.equal(runCommandLine({ command: "echo 'a'", tty: { rows: 2, cols: 3, term: 'xterm' } }), `SHELL=/bin/sh exec script -q -e -c 'stty rows 2 cols 3 2>/dev/null; echo '\\''a'\\''' /dev/null`);
  assert.equal(runCommandLine({ command: "sh -c 'exit 7'", argv: ['sh', '-c', 'exit 7'], tty: null }), "exec 'sh' '-c' 'exit 7'");
  assert.equal(runCommandLine({ command: 'cd /tmp', argv: ['cd', '/tmp'], tty: null }), "'cd' '/tmp'", 'a builtin cannot be exec\'d');
  assert.equal(exitStatus(5, null, () => 9), 5);
  assert.equal(exitStatus(null, 'SIGKILL', () => 9), 137);
});

async function waitFor(check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
