// Versions on this node: fetch the package, verify and unpack it, run its prepare commands once, and drop unused ones.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readdir, rm, stat, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { EnjinError, notFound } from '../core/errors.ts';
import type { KeptVersion, VersionSpec } from '../core/messages.ts';
import { chownTree, unpackPackage } from '../artifact/unpack.ts';
import { formatBytes } from '../artifact/rules.ts';
import type { BusPackageSource } from '../sync/package-fetch.ts';
import type { PackageReader } from '../sync/package-chunks.ts';
import type { AppAccounts } from './app-accounts.ts';
import { withBuildPaths } from './build-env.ts';
import { BUILD_DIR } from '../core/builders/detect.ts';
import { BUILDER_FILES } from '../core/builders/files.ts';
import { readLog, tailLines } from './logs.ts';
import type { Driver, RunningCommand, TaskExit, TaskHandle } from './drivers/driver.ts';
import type { LogPump } from './log-pump.ts';
import { CappedLog } from './log-writer.ts';
import { dropCachesOfGoneProjects } from './build-caches.ts';
import { checkId, checkVersion, SAFE_ID } from './version-spec.ts';
import { KeptPackages, listKept, markerFor, packageFileName, readVersionManifest } from './kept-versions.ts';

export { checkId, checkVersion, SAFE_ID } from './version-spec.ts';

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
  private readonly packages: BusPackageSource;
  /** the packages kept here, served to a controller rebuilding its store */
  readonly keptPackages: PackageReader;

  /**
   * driver: what runs prepare commands (in a cgroup of their own where it can);
   * packages: where packages are fetched from (the controllers, over the bus);
   * accounts: who prepare commands run as and who owns unpacked versions (absent: the agent's own user)
   */
  constructor(dir: string, baseEnv: () => Record<string, string>, logs: PrepareLogOptions, driver: Driver, packages: BusPackageSource, accounts: AppAccounts | null = null) {
    this.dir = dir;
    this.packages = packages;
    this.driver = driver;
    this.baseEnv = baseEnv;
    this.logs = logs;
    this.accounts = accounts;
    this.keptPackages = new KeptPackages(dir, () => this.kept());
  }

  path(versionId: string): string {
    return join(this.dir, checkId('version', versionId));
  }

  private marker(versionId: string): string {
    return `${this.path(versionId)}.prepared`;
  }

  /**
   * The verified package, kept so a controller that lost its store can fetch it back. In the versions directory, the
   * agent's and not the app's (mode 0600, the agent's user): apps pass through that directory but cannot read it.
   */
  private packagePath(versionId: string): string {
    return join(this.dir, packageFileName(checkId('version', versionId)));
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
    // A directory without a marker is what an interrupted prepare left behind; its package is fetched again.
    await rm(dest, { recursive: true, force: true });
    await rm(this.packagePath(id), { force: true });
    // Prepare logs and markers are the agent's: no app reads another version's build output.
    // Which builder runs, and why, is the first thing a user looks for in the log of a deploy that built something.
    const builderLine = version.build ? `builder: ${version.build.builder} (${version.build.reason})\n` : '';
    await writeFile(this.logPath(id), `${builderLine}fetching package ${version.sha256.slice(0, 12)} (${formatBytes(version.size)}) from the controllers\n`, { mode: 0o600 });
    try {
      // Streamed to the .download- file and checked (size, sha256) before anything is unpacked; unpacking checks again.
      await this.packages.fetch(version, tarball);
      await unpackPackage(tarball, dest, version.sha256, undefined, this.accounts?.owner(version.project));
      // Kept, not deleted: verified twice (while fetched, while unpacked), and owned by the agent since the fetch made it.
      await chmod(tarball, 0o600);
      await rename(tarball, this.packagePath(id));
    } catch (err) {
      // The prepare log is where a user looks first: the reason belongs there too.
      await writeFile(this.logPath(id), `${(err as Error).message}\n`, { flag: 'a' });
      await rm(dest, { recursive: true, force: true });
      throw err;
    } finally {
      await rm(tarball, { force: true });
    }
    try {
      if (version.build) await this.writeBuilderFiles(dest, version.project);
      const env = this.prepareEnv(version, dest);
      for (const command of version.prepare) await this.runCommand(id, command, dest, env, version.project);
    } catch (err) {
      await rm(dest, { recursive: true, force: true });
      await rm(this.packagePath(id), { force: true });
      throw err;
    }
    const tmp = `${this.marker(id)}.tmp`;
    await writeFile(tmp, JSON.stringify(markerFor(version)), { mode: 0o600 });
    await rename(tmp, this.marker(id));
    return this.readPrepareLog(id);
  }

  /** The builders' scripts (and the static server), in the version, owned like the rest of it: its prepare runs them. */
  private async writeBuilderFiles(dest: string, project: string): Promise<void> {
    const dir = join(dest, BUILD_DIR);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o755 });
    for (const [name, text] of Object.entries(BUILDER_FILES)) await writeFile(join(dir, name), text, { mode: 0o755 });
    const owner = this.accounts?.owner(project);
    if (owner) await chownTree(dir, owner);
  }

  /**
   * The environment of a version's prepare commands: the project's env, the builder's paths, and ENJIN_CACHE_DIR, the
   * project's build cache on this node (kept between versions; builders keep npm's and pip's caches there).
   */
  private prepareEnv(version: VersionSpec, dest: string): Record<string, string> {
    const cache = this.accounts ? this.accounts.cacheDir(version.project) : join(this.dir, '..', 'caches', checkId('project', version.project));
    if (!this.accounts) mkdirSync(cache, { recursive: true, mode: 0o700 });
    const env = { ...version.env, ENJIN_CACHE_DIR: cache };
    if (version.paths === undefined && version.pathEnv === undefined) return env;
    // PATH is completed from the agent's when commands start (baseEnv); a builder's paths go before it.
    return withBuildPaths({ PATH: this.baseEnv().PATH ?? '/usr/local/bin:/usr/bin:/bin', ...env }, dest, version.paths, version.pathEnv);
  }

  /**
   * Runs a version's release command (`release:`) once, in its prepared directory with its prepare environment, as
   * the app's user; its output goes to the version's prepare log, and is returned. Throws release_failed with the
   * last lines when it fails.
   */
  /** Runs a release command in the prepared build `version` with the release's own `env` (its config) over the build's. */
  async runRelease(version: VersionSpec, command: string, env: Record<string, string> = {}): Promise<string> {
    const id = version.versionId;
    if (!this.isPrepared(id)) throw new EnjinError('not_prepared', `version ${id} is not prepared on this node; its release runs after its prepare`, { status: 409 });
    const from = existsSync(this.logPath(id)) ? statSync(this.logPath(id)).size : 0;
    const dest = this.path(id);
    await writeFile(this.logPath(id), `release: running \`${command}\` once for this deploy\n`, { flag: 'a' });
    await this.runCommand(id, command, dest, { ...this.prepareEnv(version, dest), ...env }, version.project, 'release');
    return (await this.prepareLogFrom(id, from)).data;
  }

  private async runCommand(versionId: string, command: string, cwd: string, env: Record<string, string>, project: string, what: 'prepare' | 'release' = 'prepare'): Promise<void> {
    const logPath = this.logPath(versionId);
    let logError: NodeJS.ErrnoException | null = null;
    // The agent is the parent here, so plain pipes do: the output goes through the same budget and cap as instances'.
    const log = new CappedLog(logPath, this.logs.logMaxBytes, (err) => { logError = err; });
    log.write(`$ ${command}\n`);
    // As the app's user, in its own version directory (which it owns, so `npm ci` can write there).
    const account = this.accounts?.forProject(project);
    const user = account?.uid !== undefined ? { uid: account.uid, gid: account.gid } : {};
    // Through the driver: its own cgroup (prepare-AGENT-VERSION) with a memory limit, and whatever it leaves behind (a
    // daemon, even one that called setsid) is killed when it ends, is aborted, or the agent stops. AGENT tells apart
    // agents sharing one host's cgroups (several nodes on a machine): each prepares the same version in a cgroup of
    // its own, so one's cleanup never kills another's build.
    const agentTag = createHash('sha256').update(this.dir).digest('hex').slice(0, 8);
    let cmd: RunningCommand | null = null;
    try {
      cmd = await this.driver.run({ id: `prepare-${agentTag}-${versionId}`, command, cwd, env: { ...this.baseEnv(), ...(account ? { HOME: account.home } : {}), ...env }, ...user });
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
    throw new EnjinError(`${what}_failed`, `${what} command \`${command}\` ${how}${lost}; last lines of its output:\n${tail}`, { status: 422 });
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
    } catch (err) {
      // No versions directory yet: nothing to collect. Anything else is worth the caller's log.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const dirs = new Set<string>();
    const ids = new Set<string>();
    for (const e of entries) {
      // A kept package goes with its version (and one left alone by a crash goes at the next gc).
      const pkg = /^\.package-(.*)\.tar\.gz$/.exec(e.name);
      if (pkg && e.isFile()) ids.add(pkg[1]);
      // Other dot names are work in progress (downloads, unpacking): never ours to take away mid-flight.
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
      await rm(this.packagePath(id), { force: true });
      if (dirs.has(id)) removed.push(id);
    }
    await this.dropCachesOfGoneProjects();
    return removed.sort();
  }

  /** Caches of projects with no version left here go (see build-caches.ts); not while a prepare is under way. */
  private async dropCachesOfGoneProjects(): Promise<void> {
    if (this.inflight.size) return;
    await dropCachesOfGoneProjects(this.accounts ? this.accounts.cachesRoot : join(this.dir, '..', 'caches'), await this.kept());
  }

  /** The versions prepared here, from their markers, with whether their package is kept. */
  kept(): Promise<KeptVersion[]> {
    return listKept(this.dir, (id) => SAFE_ID.test(id) && !id.includes('..'));
  }

  /** The manifest file of a version unpacked here (for a version whose package was not kept). */
  manifest(versionId: string): Promise<{ file: string; text: string }> {
    return readVersionManifest(this.path(versionId), versionId);
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
