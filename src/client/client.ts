// The typed API client: the CLI and the web UI talk to the controller only through this.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { Job, JobState } from '../core/model.ts';
import type { InstanceView, JobPageView, JobTreeView, ProjectView, VersionView } from '../core/api.ts';

export type { InstanceView, ProjectView, VersionView } from '../core/api.ts';
export type JobTree = JobTreeView;

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

  deploy(project: string, tarball: Buffer): Promise<{ project: ProjectView; version: VersionView; created: boolean; job: Job | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/deploys`, { raw: tarball });
  }

  versions(project: string): Promise<{ versions: VersionView[] }> {
    return this.call('GET', `/v1/projects/${enc(project)}/versions`);
  }

  rollback(project: string, version?: string): Promise<{ version: VersionView; job: Job | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/rollback`, { body: version === undefined ? {} : { version } });
  }

  scale(project: string, services: Record<string, string | number>): Promise<{ project: ProjectView; job: Job | null }> {
    return this.call('POST', `/v1/projects/${enc(project)}/scale`, { body: { services } });
  }

  destroy(project: string): Promise<{ job: Job }> {
    return this.call('DELETE', `/v1/projects/${enc(project)}`);
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

  nodes(): Promise<{ nodes: unknown[] }> {
    return this.call('GET', '/v1/nodes');
  }

  stats(): Promise<{ routers: unknown[] }> {
    return this.call('GET', '/v1/stats');
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function query(q: Record<string, string | number | undefined>): string {
  const parts = Object.entries(q).filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}
