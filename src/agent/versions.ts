// Versions on this node: fetch the package, verify and unpack it, run its prepare commands once, and drop unused ones.
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, readdir, rm, stat, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { EnjinError, invalid, notFound } from '../core/errors.ts';
import type { VersionSpec } from '../core/messages.ts';
import { chownTree, unpackPackage } from '../artifact/unpack.ts';
import type { AppAccounts } from './app-accounts.ts';
import { readLog, tailLines } from './logs.ts';
import type { Driver, RunningCommand, TaskExit, TaskHandle } from './drivers/driver.ts';
import type { LogPump } from './log-pump.ts';
import { CappedLog } from './log-writer.ts';

/** Ids become file names: anything else could reach outside the data directory. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkId(what: string, id: unknown): string {
  if (typeof id !== 'string' || !SAFE_ID.test(id) || id.includes('..')) {
    throw invalid(`${what} ${JSON.stringify(id)} is not a valid id (letters, digits, '_', '-', '.')`);
  }
  return id;
}

/** Checks a version spec that arrived over the bus. */
export function checkVersion(v: unknown): VersionSpec {
  const s = v as VersionSpec;
  if (!s || typeof s !== 'object') throw invalid('prepare needs a version');
  checkId('version', s.versionId);
  if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(s.sha256)) throw invalid(`version ${s.versionId}: sha256 must be 64 hex digits`);
  if (typeof s.url !== 'string' || !/^https?:\/\//.test(s.url)) throw invalid(`version ${s.versionId}: url must be http(s)`);
  if (typeof s.token !== 'string') throw invalid(`version ${s.versionId}: token must be a string`);
  if (typeof s.size !== 'number' || !(s.size >= 0)) throw invalid(`version ${s.versionId}: size must be a number of bytes`);
  if (!Array.isArray(s.prepare) || s.prepare.some((c) => typeof c !== 'string')) throw invalid(`version ${s.versionId}: prepare must be a list of commands`);
  if (!s.env || typeof s.env !== 'object' || Object.values(s.env).some((x) => typeof x !== 'string')) throw invalid(`version ${s.versionId}: env must map names to strings`);
  return s;
}

/** How much of a prepare log the `prepare` and `prepare-log` replies carry. */
const PREPARE_LOG_REPLY = 256 * 1024;

/** How long a prepare command's output may trail its exit (a daemon it left behind may hold the pipe forever). */
const OUTPUT_DRAIN_MS = 2000;

export interface PrepareLogOptions {
  /** the rate budget prepare output is read within, shared with the instances */
  pump: LogPump;
  /** total cap of one version's prepare log on disk */
  logMaxBytes: number;
}

export class VersionStore {
  private readonly dir: string;
  private readonly baseEnv: () => Record<string, string>;
  private inflight = new Map<string, Promise<string>>();
  /** prepare commands under way, with the version each one prepares */
  private running = new Map<RunningCommand, string>();
  /** versions whose deploy was aborted while they prepare: a command that starts for them now is killed at once */
  private cancelled = new Set<string>();
  /** set by stop(), cleared at the next start (reapOrphans): commands that start meanwhile are killed at once */
  private stopping = false;

  private readonly logs: PrepareLogOptions;
  private readonly accounts: AppAccounts | null;
  private readonly driver: Driver;

  /**
   * driver: what runs prepare commands (in a cgroup of their own where it can);
   * accounts: who prepare commands run as and who owns unpacked versions (absent: the agent's own user)
   */
  constructor(dir: string, baseEnv: () => Record<string, string>, logs: PrepareLogOptions, driver: Driver, accounts: AppAccounts | null = null) {
    this.dir = dir;
    this.driver = driver;
    this.baseEnv = baseEnv;
    this.logs = logs;
    this.accounts = accounts;
  }

  path(versionId: string): string {
    return join(this.dir, checkId('version', versionId));
  }

  private marker(versionId: string): string {
    return `${this.path(versionId)}.prepared`;
  }

  private logPath(versionId: string): string {
    return `${this.path(versionId)}.prepare.log`;
  }

  isPrepared(versionId: string): boolean {
    return existsSync(this.marker(versionId)) && existsSync(this.path(versionId));
  }

  /** Fetches, unpacks and prepares a version; resolves with its prepare log. Concurrent calls share one run. */
  prepare(version: VersionSpec): Promise<string> {
    const id = checkVersion(version).versionId;
    const running = this.inflight.get(id);
    if (running) return running;
    const run = this.isPrepared(id) ? this.readPrepareLog(id) : this.run(version);
    this.cancelled.delete(id);
    const shared = run.finally(() => {
      this.inflight.delete(id);
      this.cancelled.delete(id);
    });
    this.inflight.set(id, shared);
    return shared;
  }

  async readPrepareLog(versionId: string): Promise<string> {
    const path = this.logPath(versionId);
    if (!existsSync(path)) return '';
    return (await readLog(path, -1, PREPARE_LOG_REPLY)).data;
  }

  async prepareLog(versionId: string): Promise<string> {
    if (!existsSync(this.logPath(versionId))) throw notFound(`prepare log of version ${versionId}`, 'the version was never prepared on this node');
    return this.readPrepareLog(versionId);
  }

  private async run(version: VersionSpec): Promise<string> {
    const id = version.versionId;
    const dest = this.path(id);
    const tarball = join(this.dir, `.download-${id}-${randomBytes(4).toString('hex')}.tar.gz`);
    // A directory without a marker is what an interrupted prepare left behind.
    await rm(dest, { recursive: true, force: true });
    // Prepare logs and markers are the agent's: no app reads another version's build output.
    await writeFile(this.logPath(id), `fetching ${version.url}\n`, { mode: 0o600 });
    try {
      await this.download(version, tarball);
      await unpackPackage(tarball, dest, version.sha256, undefined, this.accounts?.owner(version.project));
    } catch (err) {
      // The prepare log is where a user looks first: the reason belongs there too.
      await writeFile(this.logPath(id), `${(err as Error).message}\n`, { flag: 'a' });
      await rm(dest, { recursive: true, force: true });
      throw err;
    } finally {
      await rm(tarball, { force: true });
    }
    try {
      for (const command of version.prepare) await this.runCommand(id, command, dest, version.env, version.project);
    } catch (err) {
      await rm(dest, { recursive: true, force: true });
      throw err;
    }
    const tmp = `${this.marker(id)}.tmp`;
    await writeFile(tmp, JSON.stringify({ sha256: version.sha256, at: new Date().toISOString() }), { mode: 0o600 });
    await rename(tmp, this.marker(id));
    return this.readPrepareLog(id);
  }

  private async download(version: VersionSpec, to: string): Promise<void> {
    let res: Response;
    try {
      res = await fetch(version.url, { headers: { authorization: `Bearer ${version.token}` } });
    } catch (err) {
      throw new EnjinError('version_fetch_failed', `could not fetch version ${version.versionId} from ${version.url}: ${(err as Error).message}`, { status: 502, cause: err });
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new EnjinError('version_fetch_failed', `fetching version ${version.versionId} from ${version.url} answered ${res.status}`, { status: 502 });
    }
    // The declared size bounds what we write to disk: a wrong or hostile server cannot fill it.
    let received = 0;
    const limit = version.size > 0 ? version.size : Infinity;
    const guard = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        received += chunk.length;
        if (received > limit) cb(new EnjinError('package_unsafe', `version ${version.versionId} is larger than its declared ${limit} bytes`, { status: 422 }));
        else cb(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>), guard, createWriteStream(to, { mode: 0o600 }));
  }

  private async runCommand(versionId: string, command: string, cwd: string, env: Record<string, string>, project: string): Promise<void> {
    const logPath = this.logPath(versionId);
    let logError: NodeJS.ErrnoException | null = null;
    // The agent is the parent here, so plain pipes do: the output goes through the same budget and cap as instances'.
    const log = new CappedLog(logPath, this.logs.logMaxBytes, (err) => { logError = err; });
    log.write(`$ ${command}\n`);
    // As the app's user, in its own version directory (which it owns, so `npm ci` can write there).
    const account = this.accounts?.forProject(project);
    const user = account?.uid !== undefined ? { uid: account.uid, gid: account.gid } : {};
    // Through the driver: its own cgroup (prepare-VERSION) with a memory limit, and whatever it leaves behind (a
    // daemon, even one that called setsid) is killed when it ends, is aborted, or the agent stops.
    let cmd: RunningCommand | null = null;
    try {
      cmd = await this.driver.run({ id: `prepare-${versionId}`, command, cwd, env: { ...this.baseEnv(), ...(account ? { HOME: account.home } : {}), ...env }, ...user });
    } catch (err) {
      log.write(`${(err as Error).message}\n`);
    }
    const outputs = cmd ? [cmd.stdout, cmd.stderr].map((s) => this.logs.pump.pump(s, log)) : [];
    // Recorded on disk: if the agent dies, its next start finds and kills what this command left running.
    const pidFile = join(this.dir, `.prepare-${versionId}.pid`);
    let exit: TaskExit = { code: 127, signal: null };
    if (cmd) {
      this.running.set(cmd, versionId);
      // An abort or a shutdown may have come while the driver was setting the command up.
      if (this.cancelled.has(versionId) || this.stopping) void cmd.kill();
      writeFileSync(pidFile, JSON.stringify(cmd.handle));
      exit = await cmd.exited;
      this.running.delete(cmd);
      rmSync(pidFile, { force: true });
    }
    const { code, signal } = exit;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(outputs.map((o) => o.done)), new Promise<void>((r) => { timer = setTimeout(r, OUTPUT_DRAIN_MS); })]);
    clearTimeout(timer);
    for (const o of outputs) o.cut();
    log.close();
    if (code === 0) return;
    const how = exit.oomKilled ? `was killed for going over its memory limit (${signal ?? `code ${code}`})` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const tail = await tailLines(logPath);
    const lost = logError ? ` (its log could not be written: ${(logError as NodeJS.ErrnoException).code ?? (logError as Error).message})` : '';
    throw new EnjinError('prepare_failed', `prepare command \`${command}\` ${how}${lost}; last lines of its output:\n${tail}`, { status: 422 });
  }

  /**
   * At agent start: versions unpacked before apps ran as their own user (root-owned, readable by all) are given to
   * their app user and made private. Which project a version belongs to is not on disk, so this holds while one
   * user runs all apps.
   */
  async secureUnpacked(): Promise<void> {
    const owner = this.accounts?.owner('');
    if (!owner) return;
    for (const e of await readdir(this.dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory() || e.name.startsWith('.')) continue;
      const path = join(this.dir, e.name);
      const s = await stat(path);
      if (s.uid === owner.uid && (s.mode & 0o077) === 0) continue;
      await chownTree(path, owner);
      await chmod(path, 0o700);
    }
  }

  /** Removes unpacked versions (and their markers and logs) that are neither in `keep` nor in `inUse`, nor being prepared. */
  async gc(keep: Iterable<string>, inUse: Iterable<string>): Promise<string[]> {
    const spare = new Set([...keep, ...inUse, ...this.inflight.keys()]);
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch {
      return [];
    }
    const dirs = new Set<string>();
    const ids = new Set<string>();
    for (const e of entries) {
      // Dot names are work in progress (downloads, unpacking): never ours to take away mid-flight.
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory()) {
        dirs.add(e.name);
        ids.add(e.name);
      } else {
        const m = /^(.*)\.(prepared|prepare\.log(\.1)?)$/.exec(e.name);
        if (m) ids.add(m[1]);
      }
    }
    const removed: string[] = [];
    const busy = [...this.inflight.keys()];
    for (const id of ids) {
      if (spare.has(id) || !SAFE_ID.test(id)) continue;
      // whatever an unpack under way names its work directory, it starts with the version id
      if (busy.some((b) => id.startsWith(b))) continue;
      await rm(this.marker(id), { force: true });
      await rm(join(this.dir, id), { recursive: true, force: true });
      await rm(this.logPath(id), { force: true });
      await rm(`${this.logPath(id)}.1`, { force: true });
      if (dirs.has(id)) removed.push(id);
    }
    return removed.sort();
  }

  /** The prepare log from a byte offset, for following a prepare while it runs. */
  async prepareLogFrom(versionId: string, offset: number): Promise<{ data: string; offset: number }> {
    const path = this.logPath(versionId);
    if (!existsSync(path)) return { data: '', offset: 0 };
    const chunk = await readLog(path, offset, PREPARE_LOG_REPLY);
    return { data: chunk.data, offset: chunk.offset };
  }

  /** Kills the prepare commands of one version (its deploy was aborted), now and as they start; returns whether it was preparing. */
  cancel(versionId: string): boolean {
    // A prepare still fetching or unpacking is cancelled too: its commands are killed as soon as they start.
    let cancelled = this.inflight.has(versionId);
    if (cancelled) this.cancelled.add(versionId);
    for (const [cmd, id] of this.running) {
      if (id !== versionId) continue;
      void cmd.kill();
      cancelled = true;
    }
    return cancelled;
  }

  /**
   * At agent start: kills prepare commands a previous agent process left running when it died, with everything they
   * started (their whole cgroup, or their process tree where there is none).
   */
  async reapOrphans(): Promise<number> {
    this.stopping = false;
    let reaped = 0;
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch {
      return 0;
    }
    for (const name of names) {
      if (!/^\.prepare-.*\.pid$/.test(name)) continue;
      const file = join(this.dir, name);
      let handle: TaskHandle | null = null;
      try {
        const h = JSON.parse(readFileSync(file, 'utf8')) as TaskHandle;
        if (Number.isInteger(h.pid) && h.pid > 1 && Number.isInteger(h.startTime)) handle = { ...h, driver: this.driver.name };
      } catch {
        // unreadable: nothing we can trust to kill
      }
      if (handle) {
        const left = (await this.driver.processes(handle)).length;
        await this.driver.destroy(handle);
        if (left) reaped++;
      }
      rmSync(file, { force: true });
    }
    return reaped;
  }

  /** Kills running prepare commands and all they started (agent shutdown); their versions stay unprepared. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.running.keys()].map((cmd) => cmd.kill()));
  }
}
