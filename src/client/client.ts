// The typed API client: the CLI and the web UI talk to the controller only through this.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { ConfigVars, Job, JobState, NodeCapacity, NodeDisk, NodeRole } from '../core/model.ts';
import type { InstanceView, JobPageView, JobTreeView, ProjectView, QueuedJobView, RecoveryView, ReleaseView, RolloutView, VersionView, VolumeView } from '../core/api.ts';

export type { InstanceView, ProjectView, RolloutView, VersionView } from '../core/api.ts';
export type JobTree = JobTreeView;

/** A volume a destroy left on its node. */
export interface KeptVolume {
  name: string;
  node: string;
  dir: string;
  sizeBytes: number | null;
}

/** One event as `GET /v1/events` lists it: what happened, when, to what; `seq` orders them. */
export interface StoredEventView {
  seq: number;
  kind: string;
  at: string;
  message: string;
  project?: string;
  service?: string;
  nodeId?: string;
  instanceId?: string;
}

export interface Credentials {
  api: string;
  token: string;
}

/** ENJIN_API + ENJIN_TOKEN, else DATA/credentials.json with DATA from --data, ENJIN_DATA or ./.enjin. */
export function findCredentials(dataDir?: string): Credentials {
  // Empty counts as unset, so `ENJIN_API= enjin …` falls back to the data directory.
  const api = process.env.ENJIN_API || undefined;
  const token = process.env.ENJIN_TOKEN || undefined;
  if (api && token) return { api: api.replace(/\/$/, ''), token };
  const dir = resolve(dataDir ?? process.env.ENJIN_DATA ?? '.enjin');
  const file = join(dir, 'credentials.json');
  let parsed: Partial<Credentials>;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<Credentials>;
  } catch {
    throw new EnjinError('no_credentials', `no enjin credentials at ${file}; start one with \`enjin up\` here, pass --data DIR, or set ENJIN_API and ENJIN_TOKEN`, { status: 401 });
  }
  if (!parsed.api || !parsed.token) throw new EnjinError('no_credentials', `${file} lacks api or token; restart \`enjin up\` to rewrite it`, { status: 401 });
  return { api: (api ?? parsed.api).replace(/\/$/, ''), token: token ?? parsed.token };
}

export class EnjinClient {
  constructor(readonly creds: Credentials) {}

  private async call<T>(method: string, path: string, opts: { body?: unknown; raw?: Buffer; contentType?: string } = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.creds.token}` };
    let body: BodyInit | undefined;
    if (opts.raw) {
      headers['content-type'] = opts.contentType ?? 'application/gzip';
      body = new Blob([new Uint8Array(opts.raw)]);
    } else if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await fetch(`${this.creds.api}${path}`, { method, headers, body });
    } catch (err) {
      throw new EnjinError('controller_unreachable', `cannot reach the enjin API at ${this.creds.api} (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}); is \`enjin up\` running?`, { status: 503 });
    }
    const text = await res.text();
    let data: unknown = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: { code: 'bad_response', message: text.slice(0, 200) } }; }
    if (!res.ok) throw EnjinError.fromJSON((data as { error?: unknown })?.error ?? { message: `HTTP ${res.status}` }, res.status);
    return data as T;
  }

  health(): Promise<{ ok: boolean }> {
    return this.call('GET', '/healthz');
  }

  projects(): Promise<{ projects: ProjectView[] }> {
    return this.call('GET', '/v1/projects');
  }

  project(name: string): Promise<{ project: ProjectView }> {
    return this.call('GET', `/v1/projects/${enc(name)}`);
  }

  /** `git`: the checkout's commit and subject line, which `enjin releases` shows */
  deploy(project: string, tarball: Buffer, git?: { commit: string; message: string }): Promise<{ project: ProjectView; version: VersionView; created: boolean; job: QueuedJobView | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/deploys${query({ commit: git?.commit, message: git?.message })}`, { raw: tarball });
  }

  /** The project's rollout under way; null: none. */
  rollout(project: string): Promise<{ rollout: RolloutView | null }> {
    return this.call('GET', `/v1/projects/${enc(project)}/rollout`);
  }

  /** Promotes a paused rollout's canaries (409 no_paused_rollout when none waits); `job` is the rollout's tree. */
  promoteRollout(project: string): Promise<{ rollout: RolloutView | null; job: Job }> {
    return this.call('POST', `/v1/projects/${enc(project)}/rollout/promote`, { body: {} });
  }

  /** Aborts the rollout under way, putting the previous version back (409 no_paused_rollout when none runs). */
  abortRollout(project: string): Promise<{ rollout: RolloutView | null; job: Job }> {
    return this.call('POST', `/v1/projects/${enc(project)}/rollout/abort`, { body: {} });
  }

  config(project: string, reveal = false): Promise<{ release: number | null; revealed: boolean; config: ConfigVars }> {
    return this.call('GET', `/v1/projects/${enc(project)}/config${reveal ? '?reveal=true' : ''}`);
  }

  changeConfig(project: string, change: { set?: Record<string, string>; unset?: string[]; service?: string }): Promise<{ release: ReleaseView | null; job: Job | null; config: ConfigVars }> {
    return this.call('PATCH', `/v1/projects/${enc(project)}/config`, { body: change });
  }

  events(q: { project?: string; service?: string; after?: number; limit?: number } = {}): Promise<{ events: StoredEventView[]; next: number; retentionSeconds: number }> {
    return this.call('GET', `/v1/events${query({ project: q.project, service: q.service, after: q.after, limit: q.limit })}`);
  }

  releases(project: string): Promise<{ releases: ReleaseView[]; scales: Array<{ job: string; description: string; by: string | null; createdAt: string }> }> {
    return this.call('GET', `/v1/projects/${enc(project)}/releases`);
  }

  versions(project: string): Promise<{ versions: VersionView[] }> {
    return this.call('GET', `/v1/projects/${enc(project)}/versions`);
  }

  rollback(project: string, version?: string): Promise<{ version: VersionView | null; release: ReleaseView | null; job: Job | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/rollback`, { body: version === undefined ? {} : { version } });
  }

  scale(project: string, services: Record<string, string | number>): Promise<{ project: ProjectView; job: QueuedJobView | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/scale`, { body: { services } });
  }

  restart(project: string, services: string[] = []): Promise<{ project: ProjectView; job: QueuedJobView | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/restart`, { body: { services } });
  }

  /** volumes: remove the project's volumes too (also those a project already destroyed left); else they are kept */
  /** `enjin stop`: the services (all, or one) stopped and kept stopped; `force`: no waiting for nodes. */
  stop(project: string, opts: { service?: string; force?: boolean } = {}): Promise<{ project: ProjectView; job: QueuedJobView | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/stop`, { body: opts });
  }

  /** `enjin start`: the scale a stop put aside comes back. */
  start(project: string, opts: { service?: string } = {}): Promise<{ project: ProjectView; job: QueuedJobView | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/start`, { body: opts });
  }

  /** `enjin freeze` (true) / `enjin thaw` (false). */
  freeze(project: string, frozen: boolean): Promise<{ project: ProjectView }> {
    return this.call('POST', `/v1/projects/${enc(project)}/${frozen ? 'freeze' : 'thaw'}`, { body: {} });
  }

  destroy(project: string, opts: { volumes?: boolean; force?: boolean } = {}): Promise<{ job: Job | null; volumesKept?: KeptVolume[]; volumesRemoved?: Array<{ name: string; dir: string }> }> {
    const query = new URLSearchParams({ ...(opts.volumes ? { volumes: 'true' } : {}), ...(opts.force ? { force: 'true' } : {}) }).toString();
    return this.call('DELETE', `/v1/projects/${enc(project)}${query ? `?${query}` : ''}`);
  }

  /** The volumes nodes hold, measured now on ready nodes. */
  volumes(project?: string): Promise<{ volumes: VolumeView[] }> {
    return this.call('GET', `/v1/volumes${project ? `?project=${enc(project)}` : ''}`);
  }

  instances(project?: string): Promise<{ instances: InstanceView[] }> {
    return this.call('GET', `/v1/instances${project ? `?project=${enc(project)}` : ''}`);
  }

  logs(project: string, q: { service?: string; instance?: string; lines?: number; cursor?: string }): Promise<{ entries: Array<{ instanceId: string; service: string; data: string; error?: string }>; cursor: string }> {
    return this.call('GET', `/v1/projects/${enc(project)}/logs${query(q)}`);
  }

  /** One page, newest first; pass the answer's `next` as `before` for the following one. */
  jobs(q: { project?: string; service?: string; version?: string; node?: string; state?: JobState[]; limit?: number; before?: string } = {}): Promise<JobPageView> {
    return this.call('GET', `/v1/jobs${query({ project: q.project, service: q.service, version: q.version, node: q.node, state: q.state?.join(','), limit: q.limit, before: q.before })}`);
  }

  job(id: string, logs = true): Promise<{ job: JobTree }> {
    return this.call('GET', `/v1/jobs/${enc(id)}?logs=${logs}`);
  }

  /**
   * Follows a job tree live over server-sent events: yields the tree after each batch of changes and log lines, and
   * ends with the finished tree as the API reports it (including lines written as the tree ended).
   */
  async *watchJob(id: string): AsyncGenerator<JobTree> {
    let res: Response;
    try {
      res = await fetch(`${this.creds.api}/v1/jobs/${enc(id)}/events`, { headers: { authorization: `Bearer ${this.creds.token}`, accept: 'text/event-stream' } });
    } catch (err) {
      throw new EnjinError('controller_unreachable', `cannot reach the enjin API at ${this.creds.api} (${(err as Error).message}); is \`enjin up\` running?`, { status: 503 });
    }
    if (!res.ok || !res.body) {
      const body = await res.text();
      let parsed: unknown = null;
      try { parsed = JSON.parse(body); } catch { /* not JSON */ }
      throw EnjinError.fromJSON((parsed as { error?: unknown })?.error ?? { message: `HTTP ${res.status}` }, res.status);
    }
    let tree: JobTree | null = null;
    const byId = new Map<string, JobTree>();
    const index = (t: JobTree) => { byId.set(t.id, t); t.children.forEach(index); };
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut: number;
      let changed = false;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (!event || data === undefined) continue;
        const payload = JSON.parse(data);
        if (event === 'tree') {
          tree = payload as JobTree;
          byId.clear();
          index(tree);
        } else if (event === 'change') {
          const j = byId.get((payload as Job).id);
          if (j) Object.assign(j, payload, { children: j.children, log: j.log });
          else {
            // A queued tree gets its jobs when its turn comes: they join the tree under their parents.
            const parent = byId.get((payload as Job).parentId ?? '');
            if (parent) {
              const added: JobTree = { ...(payload as Job), children: [], log: [] };
              byId.set(added.id, added);
              parent.children.push(added);
              parent.children.sort((a, b) => a.position - b.position);
            }
          }
        } else if (event === 'log') {
          const j = byId.get((payload as { jobId: string }).jobId);
          if (j) (j.log ??= []).push((payload as { line: string }).line);
        } else if (event === 'end') {
          yield (await this.job(id)).job;
          return;
        }
        changed = true;
      }
      if (changed && tree) yield tree;
    }
    // The stream ended without 'end' (the controller went away): report what the API says now.
    yield (await this.job(id)).job;
  }

  abortJob(id: string): Promise<{ job: Job }> {
    return this.call('POST', `/v1/jobs/${enc(id)}/abort`);
  }

  nodes(): Promise<{ nodes: NodeListEntry[] }> {
    return this.call('GET', '/v1/nodes');
  }

  /** A join token for `enjin agent|router --join API --token T`; shown once, only its hash is kept. */
  createJoinToken(opts: { ttlSeconds?: number; reusable?: boolean } = {}): Promise<{ token: string; expiresAt: string; reusable: boolean }> {
    return this.call('POST', '/v1/nodes/tokens', { body: opts });
  }

  drainNode(node: string): Promise<{ node: NodeListEntry; jobs?: Job[] }> {
    return this.call('POST', `/v1/nodes/${enc(node)}/drain`, { body: {} });
  }

  activateNode(node: string): Promise<{ node: NodeListEntry; jobs?: Job[] }> {
    return this.call('POST', `/v1/nodes/${enc(node)}/activate`, { body: {} });
  }

  removeNode(node: string, force = false): Promise<{ node: NodeListEntry; jobs?: Job[] }> {
    return this.call('DELETE', `/v1/nodes/${enc(node)}${force ? '?force=true' : ''}`);
  }

  /** the controllers sharing the store and which one leads */
  cluster(): Promise<ClusterView> {
    return this.call('GET', '/v1/cluster');
  }

  stats(): Promise<{ routers: unknown[] }> {
    return this.call('GET', '/v1/stats');
  }
}

/** A node as `GET /v1/nodes` lists it. */
export interface NodeListEntry {
  id: string;
  name: string;
  /** ready | down | draining */
  state?: string;
  /** older controllers: ready | down, with `draining` beside it */
  status?: string;
  draining?: boolean;
  address: string;
  labels: Record<string, string>;
  compartment?: string | null;
  roles?: NodeRole[];
  capacity?: NodeCapacity | null;
  disk?: NodeDisk | null;
  /** instances placed there */
  instances: number;
  lastSeenAt: string | null;
  [more: string]: unknown;
}

export interface JoinBody {
  token: string;
  publicKey: string;
  name: string;
  roles: NodeRole[];
  labels: Record<string, string>;
  compartment?: string | null;
  address: string;
  capacity?: NodeCapacity | null;
  nodeId?: string;
}

export interface JoinReply {
  nodeId: string;
  rejoined: boolean;
  nats: { url: string; tlsCaPem?: string; credsText?: string };
}

/**
 * Joins a cluster: no bearer token, the join token in the body is the credential. A follower controller names the
 * leader, and the join is sent there once.
 */
export async function joinCluster(api: string, body: JoinBody, followed = false): Promise<JoinReply> {
  const base = api.replace(/\/$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/v1/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (err) {
    throw new EnjinError('controller_unreachable', `cannot reach the enjin API at ${base} to join (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}); check --join`, { status: 503 });
  }
  const text = await res.text();
  let data: unknown = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { code: 'bad_response', message: `${base} answered with something that is not enjin JSON: ${text.slice(0, 200)}` } }; }
  const leaderApi = (data as { leader?: { apiUrl?: unknown } | null })?.leader?.apiUrl;
  if (res.status === 503 && !followed && typeof leaderApi === 'string' && /^https?:\/\//.test(leaderApi)) return joinCluster(leaderApi, body, true);
  if (!res.ok) throw EnjinError.fromJSON((data as { error?: unknown })?.error ?? { message: `HTTP ${res.status}` }, res.status);
  return data as JoinReply;
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function query(q: Record<string, string | number | undefined>): string {
  const parts = Object.entries(q).filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** `GET /v1/cluster` */
export interface ClusterView {
  self: { id: string; apiUrl: string; leader: boolean };
  leader: { id: string; apiUrl: string } | null;
  store: { available: boolean; pendingWrites: number };
  /** a rebuild from the nodes (`--recover-from-nodes`) on this controller, or null */
  recovery: RecoveryView | null;
  controllers: Array<{ id: string; apiUrl: string; startedAt: string; lastSeenAt: string; leader: boolean; leaderSince: string | null; stale: boolean }>;
}
