// Apps are tenants, not admins: they run unprivileged, cannot read enjin's data, and leave no process behind when
// they are stopped, scaled down, destroyed or when enjin stops; an app over its memory limit is killed alone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnjinProcess, cleanup, eventually, tempDir, viaRouter } from './support/enjin.ts';

const root = process.getuid?.() === 0;

/** pid → start time (/proc/PID/stat field 22): tells a process the test saw from a later one with the same pid */
function startTime(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return rest[0] === 'Z' || rest[0] === 'X' ? null : Number(rest[19]);
  } catch {
    return null;
  }
}

/** Processes the apps reported; killed after the tests whatever happened (only these: the test started them). */
const seen = new Map<number, number>();
const stillRunning = (pids: number[]): number[] => pids.filter((p) => seen.has(p) && startTime(p) === seen.get(p));
function killSeen(): void {
  for (const pid of stillRunning([...seen.keys()])) process.kill(pid, 'SIGKILL');
}

function writeApp(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** An app that tries what a hostile tenant would, on request, and reports the error code of each attempt. */
const SNOOP_SERVER = `
const fs = require('fs');
const http = require('http');
const attempt = (fn) => { try { fn(); return 'ok'; } catch (e) { return e.code || e.message; } };
fs.writeFileSync('started.txt', 'written in my own directory');
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const path = url.searchParams.get('path');
  let body;
  if (url.pathname === '/read') body = attempt(() => fs.readFileSync(path));
  else if (url.pathname === '/list') body = attempt(() => fs.readdirSync(path));
  else if (url.pathname === '/write') body = attempt(() => fs.writeFileSync(path, 'x'));
  else body = JSON.stringify({ uid: process.getuid(), gid: process.getgid(), home: process.env.HOME, cwd: process.cwd() });
  res.end(body);
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

/** Leaves a child in a session of its own and a double-forked daemon, writing their pids to $HOME/INSTANCE.pids. */
const ESCAPE_SCRIPT = `f="$HOME/$ENJIN_INSTANCE.pids"
setsid sleep 1000 & echo $! >> "$f"
( setsid sh -c 'sleep 1000 & echo $! >> "$1"' sh "$f" & )
echo $$ >> "$f"
exec sleep 1000
`;

describe('apps run unprivileged and cannot reach enjin', { skip: !root && 'needs root: apps run as another user only when enjin runs as root' }, () => {
  let enjin: EnjinProcess;
  let data: string;
  const dirs: string[] = [];

  before(async () => {
    data = tempDir('isolation');
    enjin = await EnjinProcess.start(data);
  });

  after(async () => {
    await enjin?.stop('SIGINT');
    killSeen();
    cleanup(data, ...dirs);
  });

  test('an app cannot read credentials, the store, logs or other versions\' files, nor write outside its own directories', async () => {
    const app = writeApp(tempDir('snoop'), {
      'enjin.yaml': 'project: snoop\nprepare:\n  - sh prepare.sh\nservices:\n  web:\n    command: node server.js\n    health: { http: /whoami }\n',
      // npm-style: writes into its own directory and its HOME (a cache)
      'prepare.sh': 'set -e\nid -u > prepare-uid.txt\nmkdir -p node_modules/dep\necho built > node_modules/dep/index.txt\nmkdir -p "$HOME/.npm"\necho cached > "$HOME/.npm/entry"\n',
      'server.js': SNOOP_SERVER,
    });
    dirs.push(app);
    assert.equal((await enjin.cli(['deploy', app])).code, 0);
    // a second version, so there is another version's files to go after
    writeFileSync(join(app, 'server.js'), `${SNOOP_SERVER}\n// v2\n`);
    const r = await enjin.cli(['deploy', app]);
    assert.equal(r.code, 0, r.stderr);
    const versions = (await enjin.cli(['--json', 'versions', '--project', 'snoop'])).json.versions as Array<{ id: string; number: number }>;
    const v1 = versions.find((v) => v.number === 1)!.id;
    const v2 = versions.find((v) => v.number === 2)!.id;
    const ask = async (path: string) => (await viaRouter(enjin.routerPort, 'web.snoop.localhost', path)).body;
    const who = JSON.parse(await ask('/whoami'));
    assert.notEqual(who.uid, 0, 'the app does not run as root');
    assert.notEqual(who.gid, 0);
    assert.equal(who.cwd, join(data, 'agent', 'versions', v2));

    const agent = join(data, 'agent');
    const denied: Array<[string, string]> = [
      ['/read', join(data, 'credentials.json')],
      ['/read', '../../../credentials.json'],
      ['/list', data],
      ['/list', join(data, 'store')],
      ['/read', join(data, 'store', 'PG_VERSION')],
      ['/list', join(data, 'controller')],
      ['/list', join(data, 'router')],
      ['/read', join(agent, 'state.json')],
      ['/list', join(agent, 'logs')],
      ['/list', join(agent, 'versions')],
      ['/read', join(agent, 'versions', `${v1}.prepare.log`)],
      ['/read', join(agent, 'versions', `${v1}.prepared`)],
      // the verified package the agent keeps for a controller recovering from the nodes
      ['/read', join(agent, 'versions', `.package-${v1}.tar.gz`)],
      ['/write', join(data, 'planted')],
      ['/write', join(agent, 'planted')],
      ['/write', join(agent, 'versions', `${v1}.prepared`)],
      ['/write', join(agent, 'homes', 'planted')],
    ];
    for (const [op, path] of denied) assert.equal(await ask(`${op}?path=${encodeURIComponent(path)}`), 'EACCES', `${op} ${path}`);
    // its own directory and HOME are its own
    assert.equal(await ask(`/write?path=${encodeURIComponent('own.txt')}`), 'ok');
    assert.equal(await ask(`/write?path=${encodeURIComponent(join(who.home, 'note'))}`), 'ok');

    // The instance's processes, seen from outside: not root.
    const instance = (await enjin.cli(['--json', 'ps', 'snoop'])).json.instances[0];
    const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$/m.exec(readFileSync(`/proc/${instance.pid}/status`, 'utf8'))!.slice(1).map(Number);
    assert.ok(uids.every((u) => u === who.uid), `real, effective, saved and fs uid are the app's: ${uids}`);
    // prepare ran as the app user, and could write where npm ci writes
    const dir = join(agent, 'versions', v2);
    assert.equal(readFileSync(join(dir, 'prepare-uid.txt'), 'utf8').trim(), String(who.uid));
    assert.equal(readFileSync(join(dir, 'node_modules/dep/index.txt'), 'utf8'), 'built\n');
    assert.equal(readFileSync(join(who.home, '.npm/entry'), 'utf8'), 'cached\n');
    // on disk: enjin's files are enjin's, a version is its app's alone
    const mode = (p: string) => statSync(p).mode & 0o777;
    assert.equal(mode(join(data, 'credentials.json')), 0o600);
    assert.equal(statSync(join(data, 'credentials.json')).uid, 0);
    assert.equal(mode(join(data, 'store')), 0o700);
    assert.equal(mode(join(data, 'controller')), 0o700);
    assert.equal(mode(join(agent, 'logs')), 0o700);
    assert.equal(mode(join(agent, 'state.json')), 0o600);
    assert.equal(mode(dir), 0o700);
    assert.equal(statSync(dir).uid, who.uid);
    assert.equal(statSync(join(dir, 'server.js')).uid, who.uid);
  });

  /** The pids an instance's script wrote (main, setsid child, daemon), once all three are there. */
  async function pidsOf(project: string, instance: string): Promise<number[]> {
    const file = join(data, 'agent', 'homes', project, `${instance}.pids`);
    const pids = await eventually(() => {
      const list = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
      return list.length >= 3 ? list : null;
    }, `three pids in ${file}`);
    for (const pid of pids) {
      const t = startTime(pid);
      if (t !== null) seen.set(pid, t);
    }
    assert.equal(stillRunning(pids).length, 3, 'main, setsid child and daemon all run');
    return pids;
  }

  const instanceIds = async (project: string): Promise<string[]> =>
    (await enjin.cli(['--json', 'ps', project])).json.instances.map((i: { id: string }) => i.id);

  test('scale-down and destroy leave no process of an instance, not even a setsid child or a daemon', async () => {
    const app = writeApp(tempDir('escape'), { Procfile: 'worker: sh escape.sh\n', 'escape.sh': ESCAPE_SCRIPT });
    dirs.push(app);
    assert.equal((await enjin.cli(['deploy', app, '--project', 'escape'])).code, 0);
    const r = await enjin.cli(['scale', 'worker=2', '--project', 'escape']);
    assert.equal(r.code, 0, r.stderr);
    const mains = await instanceIds('escape');
    assert.equal(mains.length, 2);
    const all = new Map<string, number[]>();
    for (const main of mains) all.set(main, await pidsOf('escape', main));

    assert.equal((await enjin.cli(['scale', 'worker=1', '--project', 'escape'])).code, 0);
    const [kept] = await instanceIds('escape');
    const removed = mains.find((m) => m !== kept)!;
    await eventually(() => stillRunning(all.get(removed)!).length === 0, 'every process of the removed instance is gone', 30_000);
    assert.equal(stillRunning(all.get(kept)!).length, 3, 'the other instance is untouched');

    assert.equal((await enjin.cli(['destroy', 'escape'])).code, 0);
    await eventually(() => stillRunning(all.get(kept)!).length === 0, 'every process of the destroyed project is gone', 30_000);
  });

  test('Ctrl-C stops every process of every instance', async () => {
    const app = writeApp(tempDir('escape2'), { Procfile: 'worker: sh escape.sh\n', 'escape.sh': ESCAPE_SCRIPT });
    dirs.push(app);
    assert.equal((await enjin.cli(['deploy', app, '--project', 'escape2'])).code, 0);
    const [main] = await instanceIds('escape2');
    const pids = await pidsOf('escape2', main);
    const exit = await enjin.stop('SIGINT');
    assert.equal(exit.code, 0);
    assert.deepEqual(stillRunning(pids), [], `nothing of the app outlived enjin; enjin said: ${enjin.output}`);
  });
});

describe('a memory limit per instance', { skip: !root && 'needs root for cgroups' }, () => {
  test('an instance that allocates beyond --instance-memory is killed and restarted; enjin stays up', async () => {
    const data = tempDir('memory');
    const app = writeApp(tempDir('hog'), {
      // stays up long enough to count as running, then takes far more than its limit
      Procfile: `hog: python3 -c "import time; time.sleep(2); a = bytearray(b'x') * (512 * 1024 * 1024); time.sleep(1000)"\n`,
    });
    const enjin = await EnjinProcess.start(data, ['--instance-memory', '64M']);
    try {
      assert.doesNotMatch(enjin.output, /without a memory limit/);
      assert.equal((await enjin.cli(['deploy', app, '--project', 'hog'])).code, 0);
      const instance = await eventually(async () => {
        const [i] = (await enjin.cli(['--json', 'ps', 'hog'])).json.instances;
        return i && i.restarts >= 1 && i.lastExit ? i : null;
      }, 'the instance was killed and restarted', 90_000);
      // python itself is killed (SIGKILL); the shell around it exits 128 + 9
      assert.ok(instance.lastExit.signal === 'SIGKILL' || instance.lastExit.code === 137, JSON.stringify(instance.lastExit));
      await eventually(async () => (await enjin.cli(['logs', 'hog/hog', '-n', '50'])).stdout.includes('out of memory'), 'the log says why');
      assert.equal(enjin.child.exitCode, null, 'enjin is still running');
      assert.equal((await enjin.cli(['--json', 'projects'])).code, 0, 'and answers');
    } finally {
      await enjin.stop('SIGINT');
      cleanup(data, app);
    }
  });
});
