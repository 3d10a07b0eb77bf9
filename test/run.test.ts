// End to end with `enjin up`: `enjin run` runs a one-off process in the project's release environment on the node,
// streams its output, passes stdin through (a terminal of its own when the CLI's stdin is one), exits with its code,
// and is a job with its log that an abort, or the CLI going away, ends by killing the process.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, BIN, cleanup, EnjinProcess, eventually, ROOT, tempDir } from './support/enjin.ts';

const dataDir = tempDir('run');
const app = tempDir('run-app');
let enjin: EnjinProcess;

before(async () => {
  mkdirSync(app, { recursive: true });
  writeFileSync(join(app, 'server.js'), "require('http').createServer((q, s) => s.end('up\\n')).listen(process.env.PORT);\n");
  writeFileSync(join(app, 'Procfile'), 'web: node server.js\nclock: sh -c "while true; do sleep 5; done"\n');
  writeFileSync(join(app, 'enjin.yaml'), 'project: runner\nenv:\n  GREETING: hello\nservices:\n  clock:\n    env:\n      TICK: fast\n');
  enjin = await EnjinProcess.start(dataDir);
  const deployed = await enjin.cli(['deploy', app], { timeoutMs: 300_000 });
  assert.equal(deployed.code, 0, deployed.stderr + deployed.stdout);
});

after(async () => {
  await enjin?.cli(['destroy', 'runner', '--yes']).catch(() => undefined);
  await enjin?.stop();
  cleanup(dataDir, app);
});

interface Run { code: number | null; stdout: string; stderr: string }

/** `enjin run` with `input` on its stdin (a pipe); `onOutput` sees stdout as it streams. */
function run(args: string[], input = '', onOutput?: (stdout: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  const child = spawn(process.execPath, [BIN, '--data', dataDir, ...args], { cwd: ROOT, env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    onOutput?.(stdout, child);
  });
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(input);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

interface JobRow { id: string; kind: string; state: string; title: string; tags: Record<string, string> }

async function runJobs(): Promise<JobRow[]> {
  const r = await enjin.cli(['--json', 'jobs', '--project', 'runner', '--limit', '100']);
  assert.equal(r.code, 0, r.stderr);
  const page = r.json as { jobs?: JobRow[]; trees?: JobRow[] };
  return (page.jobs ?? page.trees ?? []).filter((j) => j.kind === 'run');
}

test('the exit code is passed through exactly, output streams, and the release environment is there', { timeout: 300_000 }, async () => {
  const seven = await run(['run', '--project', 'runner', '--', 'sh', '-c', 'exit 7']);
  assert.equal(seven.code, 7, seven.stderr);

  const env = await run(['run', '--project', 'runner', '--', 'sh', '-c', 'echo "$ENJIN_PROJECT $ENJIN_SERVICE $GREETING ${PORT:-noport}"; echo "run=$ENJIN_RUN"; echo to-stderr >&2; id -un; test -f server.js && echo in-build']);
  assert.equal(env.code, 0, env.stderr);
  assert.match(env.stdout, /^runner web hello noport$/m);
  assert.match(env.stdout, /^run=run_[0-9a-z]+$/m);
  assert.match(env.stdout, /^in-build$/m, 'it runs in the build directory');
  assert.match(env.stderr, /to-stderr/);
  assert.doesNotMatch(env.stdout, /to-stderr/, 'stderr stays stderr');

  const clock = await run(['run', '--project', 'runner', '--service', 'clock', '--', 'echo $ENJIN_SERVICE $TICK']);
  assert.equal(clock.code, 0, clock.stderr);
  assert.equal(clock.stdout, 'clock fast\n', 'one word is a shell command line, in the service\'s own environment');

  // A signal death reads like a shell's: 128 + its number.
  const killed = await run(['run', '--project', 'runner', '--', 'sh', '-c', 'kill -TERM $$']);
  assert.equal(killed.code, 143, killed.stderr);
});

test('stdin is passed through, EOF closes it, and a large input arrives whole', { timeout: 300_000 }, async () => {
  const hi = await run(['run', '--project', 'runner', '--', 'cat'], 'hi\n');
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(hi.stdout, 'hi\n');

  const big = 'x'.repeat(3 * 1024 * 1024);
  const counted = await run(['run', '--project', 'runner', '--', 'wc', '-c'], big);
  assert.equal(counted.code, 0, counted.stderr);
  assert.equal(counted.stdout.trim(), String(big.length));

  // And a large output comes back whole, in order.
  const lines = await run(['run', '--project', 'runner', '--', 'seq', '1', '200000']);
  assert.equal(lines.code, 0, lines.stderr);
  const got = lines.stdout.trim().split('\n');
  assert.equal(got.length, 200000);
  assert.equal(got[0], '1');
  assert.equal(got[199999], '200000');
  // Its job log keeps the head and the tail, bounded, and says what it left out.
  const job = (await runJobs()).find((j) => /seq 1 200000/.test(j.title));
  assert.ok(job);
  const shown = await enjin.cli(['--json', 'jobs', 'show', job.id]);
  const log = (shown.json as { job: { log: string[] } }).job.log;
  assert.ok(log.length <= 10_010, `${log.length} lines logged`);
  assert.ok(log.includes('1') && log.includes('200000'), 'head and tail are kept');
  assert.ok(log.some((l) => /line\(s\) .* not kept in this log/.test(l)));
});

test('--json prints the job, the exit code and the output at the end', { timeout: 300_000 }, async () => {
  const r = await run(['--json', 'run', '--project', 'runner', '--', 'sh', '-c', 'echo out; echo err >&2; exit 2']);
  assert.equal(r.code, 2, r.stderr);
  const result = JSON.parse(r.stdout) as { job: string; exitCode: number; stdout: string; stderr: string; state: string };
  assert.equal(result.exitCode, 2);
  assert.equal(result.stdout, 'out\n');
  assert.equal(result.stderr, 'err\n');
  assert.equal(result.state, 'failed');
  assert.match(result.job, /^job_/);

  // The job is listed, tagged, with the output in its log.
  const jobs = await runJobs();
  const job = jobs.find((j) => j.id === result.job);
  assert.ok(job, `run job ${result.job} is listed in ${JSON.stringify(jobs.map((j) => j.id))}`);
  assert.equal(job.tags.project, 'runner');
  assert.equal(job.tags.service, 'web');
  assert.match(job.title, /exit 2/);
  const shown = await enjin.cli(['--json', 'jobs', 'show', result.job]);
  assert.equal(shown.code, 0, shown.stderr);
  const log = (shown.json as { job: { log: string[]; error: string } }).job;
  assert.ok(log.log.includes('out') && log.log.includes('err'), JSON.stringify(log.log));
  assert.match(log.error, /exited with code 2/);
});

test('on a terminal the process gets one: an interactive shell', { timeout: 300_000 }, async () => {
  const command = [process.execPath, BIN, '--data', dataDir, 'run', '--project', 'runner', '--', 'sh'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, ENJIN_API: '', ENJIN_TOKEN: '', TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  let typed = false;
  child.stdout.on('data', (d) => {
    output += d;
    // The remote shell's prompt says it reads from its terminal: type as a person would.
    if (!typed && /[$#] $/.test(output)) {
      typed = true;
      child.stdin.write('tty; echo $((6*7)); exit 3\r');
    }
  });
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 3, output);
  assert.match(output, /\/dev\/pts\/\d+/, 'the remote shell has a terminal');
  assert.match(output, /^42\r?$/m);
});

test('aborting the job kills the process; so does the CLI going away', { timeout: 300_000 }, async () => {
  let pid = 0;
  const aborted = run(['run', '--project', 'runner', '--', 'sh', '-c', 'echo "pid $$"; exec sleep 600'], '', (out) => {
    const m = /pid (\d+)/.exec(out);
    if (m) pid = Number(m[1]);
  });
  await eventually(() => pid > 0, 'the process said its pid', 120_000);
  assert.ok(alive(pid));
  const job = await eventually(async () => (await runJobs()).find((j) => j.state === 'running' && /sleep 600/.test(j.title)), 'the run job is running');
  const abort = await enjin.cli(['--json', 'jobs', 'abort', job.id]);
  assert.equal(abort.code, 0, abort.stderr);
  const ended = await aborted;
  assert.equal(ended.code, 137, `killed: 128 + SIGKILL (${ended.stderr})`);
  assert.match(ended.stderr, /aborted/);
  await eventually(() => !alive(pid), `process ${pid} is gone`);
  assert.equal((await runJobs()).find((j) => j.id === job.id)?.state, 'aborted');

  // The CLI killed outright: nobody is there to answer the process, so it goes too.
  let pid2 = 0;
  let cli: ReturnType<typeof spawn> | null = null;
  const orphaned = run(['run', '--project', 'runner', '--', 'sh', '-c', 'echo "pid $$"; exec sleep 600'], '', (out, child) => {
    const m = /pid (\d+)/.exec(out);
    if (m) { pid2 = Number(m[1]); cli = child; }
  });
  await eventually(() => pid2 > 0, 'the second process said its pid', 120_000);
  (cli as ReturnType<typeof spawn> | null)!.kill('SIGKILL');
  await orphaned;
  await eventually(() => !alive(pid2), `process ${pid2} is gone once its CLI is`);
  const gone = await eventually(async () => (await runJobs()).find((j) => /sleep 600/.test(j.title) && j.id !== job.id && j.state !== 'running'), 'the second run job ended');
  assert.equal(gone.state, 'failed');
});

test('Ctrl-C without a terminal reaches the process as SIGINT', { timeout: 300_000 }, async () => {
  let interrupted = false;
  const r = await run(['run', '--project', 'runner', '--', 'sh', '-c', "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.2; done"], '', (out, child) => {
    if (!interrupted && /ready/.test(out)) {
      interrupted = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(r.code, 5, r.stderr);
  assert.match(r.stdout, /got-int/);
});

test('with no node holding the build, it is prepared first and that shows as progress', { timeout: 300_000 }, async () => {
  const scaled = await enjin.cli(['--json', 'scale', 'web=0', 'clock=0', '--project', 'runner'], { timeoutMs: 300_000 });
  assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
  const r = await run(['--json', 'run', '--project', 'runner', '--', 'cat', 'server.js']);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout) as { job: string; stdout: string };
  assert.match(result.stdout, /createServer/);
  const shown = await enjin.cli(['--json', 'jobs', 'show', result.job]);
  const tree = (shown.json as { job: { kind: string; children: Array<{ kind: string; state: string }> } }).job;
  assert.equal(tree.kind, 'run');
  assert.deepEqual(tree.children.map((c) => [c.kind, c.state]), [['prepare', 'succeeded']]);
  const human = await run(['run', '--project', 'runner', '--', 'true']);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stderr, /preparing runner v1 on .* first/);
});

test('bad requests: an unknown service lists the services, an unknown project says so, nothing runs', { timeout: 120_000 }, async () => {
  const r = await enjin.cli(['--json', 'run', '--project', 'runner', '--service', 'nope', '--', 'true']);
  assert.notEqual(r.code, 0);
  const err = JSON.parse(r.stderr).error as { code: string; message: string };
  assert.equal(err.code, 'unknown_service');
  assert.match(err.message, /web, clock|clock, web/);
  const p = await enjin.cli(['--json', 'run', '--project', 'nothere', '--', 'true']);
  assert.notEqual(p.code, 0);
  assert.equal(JSON.parse(p.stderr).error.code, 'not_found');
});

test('destroying the project ends its one-off runs: their processes are killed', { timeout: 300_000 }, async () => {
  let pid = 0;
  const running = run(['run', '--project', 'runner', '--', 'sh', '-c', 'echo "pid $$"; exec sleep 600'], '', (out) => {
    const m = /pid (\d+)/.exec(out);
    if (m) pid = Number(m[1]);
  });
  await eventually(() => pid > 0, 'the process said its pid', 120_000);
  const destroyed = await enjin.cli(['destroy', 'runner', '--yes'], { timeoutMs: 300_000 });
  assert.equal(destroyed.code, 0, destroyed.stderr + destroyed.stdout);
  const ended = await running;
  assert.notEqual(ended.code, 0, 'the run did not end well');
  await eventually(() => !alive(pid), `process ${pid} is gone with its project`);
});
