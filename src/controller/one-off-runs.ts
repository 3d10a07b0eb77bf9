// One-off runs (`enjin run`): a process in a project's current release environment on one node, as a job tree (a
// `run` root, with a `prepare` child when no node has the build yet). The client's connection (a WebSocket, see
// api/routes/run.ts) and the agent's per-run bus subjects are joined here: output out, stdin in, exit last.
import { EnjinError, invalid, notFound } from '../core/errors.ts';
import { runVolumes, volumeNodeFor } from './volumes.ts';
import { newId } from '../core/ids.ts';
import type { Job, Node, Project, Version } from '../core/model.ts';
import type { Bus } from '../bus/bus.ts';
import type { ControllerState } from './state.ts';
import type { JobAction, JobEngine, JobSpec } from './jobs/engine.ts';
import { buildVersion, releaseEnv, versionSpec } from './jobs/specs.ts';
import { RunSession, type RunClient } from './one-off-session.ts';

export type { RunClient } from './one-off-session.ts';

/** What a client asks for when it opens a run. */
export interface RunRequest {
  /** argv: one word is a shell command line as written; several are quoted so each arrives as one argument */
  command: string[];
  service?: string;
  /** a terminal of this size (the client's stdin is one); absent: plain pipes */
  tty?: { rows: number; cols: number; term?: string } | null;
}

/** The parts of the controller runs use. */
export interface RunHost {
  readonly state: ControllerState;
  readonly bus: Bus;
  readonly jobs: JobEngine;
  project(name: string): Project;
}

const MAX_ARGS = 1000;
const MAX_COMMAND_CHARS = 64 * 1024;

export class OneOffRuns {
  private readonly sessions = new Map<string, RunSession>();

  constructor(private readonly host: RunHost) {}

  /** The job action of a `run` root: runs the process its client is waiting for (see RunSession.execute). */
  get actions(): Record<string, JobAction> {
    return {
      run: async ({ job, log, signal }) => {
        const session = this.sessions.get(job.params.runId as string);
        if (!session) throw new EnjinError('run_interrupted', 'the client that asked for this run is gone (or the controller restarted); nothing was started', { status: 410 });
        await session.execute(log, signal);
      },
    };
  }

  /**
   * Checks the request, picks a node, and starts the run's job tree; the session then reports to `client` until the
   * tree ends. Throws (before anything starts) for a bad request, a project with no release, or no node.
   */
  async open(projectName: string, req: RunRequest, client: RunClient): Promise<RunSession> {
    const { state } = this.host;
    const command = commandLine(req.command);
    const tty = checkTty(req.tty);
    const project = this.host.project(projectName);
    const version = project.currentVersionId ? state.versions.get(project.currentVersionId) : undefined;
    if (!version) throw new EnjinError('not_deployed', `${project.name} has no release yet: deploy it first (\`enjin deploy\`), then run commands in it`, { status: 409 });
    const service = pickService(project, version, req.service);
    const build = buildVersion(this.host, version);
    const place = chooseNode(state, project, build, service);
    if (!place) throw new EnjinError('no_ready_nodes', 'no ready node can run it (none is up, or all are draining or short of disk); see `enjin nodes`', { status: 503 });
    const nodeName = place.node.name;
    const ws = state.workspaces.get(project.workspaceId)?.name ?? 'default';
    const vtag = `v${version.number}`;
    const runId = newId('run');
    const shown = command.length > 60 ? `${command.slice(0, 57)}…` : command;
    const spec: JobSpec = {
      kind: 'run',
      title: `run \`${shown}\` in ${project.name} ${service} ${vtag} on ${nodeName}`,
      tags: { workspace: ws, project: project.name, service, version: vtag, node: place.node.id },
      // no env here: params are stored, and the release's env holds secrets
      params: { projectId: project.id, versionId: version.id, service, nodeId: place.node.id, runId, command, tty: tty !== null },
      children: place.prepared ? [] : [{
        kind: 'prepare',
        title: `prepare ${project.name} v${build.number} on ${nodeName}`,
        tags: { version: `v${build.number}`, node: place.node.id },
        params: { projectId: project.id, versionId: build.id, nodeId: place.node.id },
      }],
    };
    const session = new RunSession({
      bus: this.host.bus, jobs: this.host.jobs, client, runId, nodeId: place.node.id, nodeName,
      nodeReady: () => state.nodes.get(place.node.id)?.status === 'ready',
      spec: {
        runId, project: project.name, service, command, tty,
        ...(req.command.length > 1 ? { argv: req.command } : {}),
        version: versionSpec(this.host, project, build),
        env: { ...releaseEnv(project, version, service), ENJIN_RUN: runId },
        ...runVolumes(version.manifest, service, ws),
      },
      describe: { service, version: vtag, node: nodeName, prepare: !place.prepared },
    });
    this.sessions.set(runId, session);
    let root: Job;
    try {
      root = await this.host.jobs.start(spec);
    } catch (err) {
      this.sessions.delete(runId);
      throw err;
    }
    void session.follow(root).finally(() => this.sessions.delete(runId));
    return session;
  }
}

/** One word: a shell command line as the user wrote it (`enjin run 'echo $HOME'`); several: each word quoted. */
export function commandLine(argv: unknown): string {
  if (!Array.isArray(argv) || !argv.length || argv.length > MAX_ARGS || argv.some((a) => typeof a !== 'string')) {
    throw invalid(`give the command to run as a list of 1 to ${MAX_ARGS} words: \`enjin run -- CMD ARGS…\``);
  }
  const words = argv as string[];
  if (words.some((w) => w.includes('\0'))) throw invalid('the command contains a NUL character; send text');
  const line = words.length === 1 ? words[0] : words.map(quoteIfNeeded).join(' ');
  if (!line.trim()) throw invalid('the command is empty: `enjin run -- CMD ARGS…`');
  if (line.length > MAX_COMMAND_CHARS) throw invalid(`the command is over ${MAX_COMMAND_CHARS} characters`);
  return line;
}

/** Plain words stay readable in job titles; anything the shell would read differently is single-quoted. */
function quoteIfNeeded(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function checkTty(tty: RunRequest['tty']): { rows: number; cols: number; term: string } | null {
  if (tty === undefined || tty === null) return null;
  const size = (n: unknown) => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 10_000;
  if (typeof tty !== 'object' || !size(tty.rows) || !size(tty.cols)) throw invalid('tty must be { rows, cols } from 1 to 10000');
  const term = tty.term && /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/.test(tty.term) ? tty.term : 'xterm';
  return { rows: tty.rows, cols: tty.cols, term };
}

/** The service whose environment the run gets: the one asked for, else `web` if there is one, else the first. */
export function pickService(project: Project, version: Version, asked: string | undefined): string {
  const services = Object.keys(version.manifest.services);
  if (asked !== undefined) {
    if (!Object.hasOwn(version.manifest.services, asked)) {
      throw new EnjinError('unknown_service', `${project.name} has no service "${asked}"; it has ${services.join(', ') || 'none'}`, { status: 404 });
    }
    return asked;
  }
  if (services.includes('web')) return 'web';
  if (!services.length) throw notFound(`a service of ${project.name}`, 'its manifest names none');
  return services[0];
}

/**
 * Where a run goes: a ready agent node that already has the build (it runs an instance of it, preferably of the
 * service); else the ready agent node with the fewest instances, which prepares the build first. null: none.
 */
export function chooseNode(state: ControllerState, project: Project, build: Version, service: string): { node: Node; prepared: boolean } | null {
  // A service with volumes runs where they are (a down or draining volume node is an error that says so).
  const pinned = volumeNodeFor(state, project, build.manifest, service);
  const usable = (id: string) => {
    const n = state.nodes.get(id);
    return n && n.status === 'ready' && !n.draining && n.roles.includes('agent') && (!pinned || n.id === pinned) ? n : null;
  };
  const buildOf = (versionId: string) => {
    const v = state.versions.get(versionId);
    return v ? (v.buildId ?? v.id) : null;
  };
  const holding = state.instancesOf(project.id)
    .filter((i) => i.current?.state === 'running' && buildOf(i.versionId) === build.id && usable(i.nodeId))
    .sort((a, b) => Number(b.service === service) - Number(a.service === service));
  if (holding.length) return { node: usable(holding[0].nodeId)!, prepared: true };
  const nodes = [...state.nodes.values()].filter((n) => usable(n.id) && !n.disk?.low);
  if (!nodes.length) return null;
  nodes.sort((a, b) => state.instancesOnNode(a.id).length - state.instancesOnNode(b.id).length || a.name.localeCompare(b.name));
  return { node: nodes[0], prepared: false };
}
