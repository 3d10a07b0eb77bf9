// Rows of the store's tables mapped to the domain types (and the small conversions they need), for both backends.
import type { Selectable } from 'kysely';
import type { ConfigVars, Instance, InstanceDesiredState, InstanceState, Job, JobState, JobTags, Node, Project, Version, Workspace } from '../core/model.ts';
import type { ControllersTable, InstancesTable, JobsTable, JoinTokensTable, NodesTable, ProjectsTable, TokensTable, VersionsTable, WorkspacesTable } from './schema.ts';
import type { ConfigSealer, ControllerRecord, JoinTokenRecord, TokenRecord } from './store.ts';
import { EnjinError } from '../core/errors.ts';

export function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

export function isoOrNull(value: Date | string | null): string | null {
  return value === null ? null : iso(value);
}

export function definedTags(tags: JobTags | undefined): JobTags | null {
  if (!tags) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(tags)) if (v !== undefined) out[k] = v;
  return Object.keys(out).length > 0 ? (out as JobTags) : null;
}

export function bySiblingOrder(a: Job, b: Job): number {
  if (a.position !== b.position) return a.position - b.position;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function toWorkspace(r: Selectable<WorkspacesTable>): Workspace {
  return { id: r.id, name: r.name, createdAt: iso(r.created_at) };
}

export function toToken(r: Selectable<TokensTable>): TokenRecord {
  return { id: r.id, name: r.name, hash: r.hash, workspaceId: r.workspace_id, createdAt: iso(r.created_at) };
}

/** A store that meets config without a master key to open it: refused, never read as empty. */
function noSealer(): EnjinError {
  return new EnjinError('master_key_missing', 'the store holds config vars but this controller was opened without a master key; start it with its data directory (master.key) or ENJIN_MASTER_KEY', { status: 500 });
}

/** Config as a column holds it: sealed, or null for none. */
export function sealConfig(config: ConfigVars | undefined, sealer: ConfigSealer | undefined): string | null {
  if (!config) return null;
  if (!sealer) throw noSealer();
  return sealer.seal(config);
}

function openConfig(sealed: string | null, sealer: ConfigSealer | undefined): ConfigVars | undefined {
  if (sealed === null) return undefined;
  if (!sealer) throw noSealer();
  return sealer.unseal(sealed);
}

export function toProject(r: Selectable<ProjectsTable>, sealer?: ConfigSealer): Project {
  const config = openConfig(r.config ?? null, sealer);
  return {
    id: r.id,
    workspaceId: r.workspace_id,
    name: r.name,
    currentVersionId: r.current_version_id,
    routedVersionId: r.routed_version_id,
    scale: r.scale,
    ...(config ? { config } : {}),
    ...(r.frozen ? { frozen: true } : {}),
    ...(r.stopped_scale && Object.keys(r.stopped_scale).length ? { stoppedScale: r.stopped_scale } : {}),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export function toVersion(r: Selectable<VersionsTable>, sealer?: ConfigSealer): Version {
  const config = openConfig(r.config ?? null, sealer);
  return {
    id: r.id,
    projectId: r.project_id,
    number: r.number,
    sha256: r.sha256,
    size: Number(r.size),
    manifest: r.manifest,
    createdAt: iso(r.created_at),
    ...(r.build_id ? { buildId: r.build_id } : {}),
    ...(config ? { config } : {}),
    ...(r.cause ? { cause: r.cause } : {}),
  };
}

export function toInstance(r: Selectable<InstancesTable>): Instance {
  return {
    id: r.id,
    workspaceId: r.workspace_id,
    projectId: r.project_id,
    service: r.service,
    versionId: r.version_id,
    nodeId: r.node_id,
    desired: r.desired as InstanceDesiredState,
    createdAt: iso(r.created_at),
    // The check constraint instances_current_whole keeps state, node and reportedAt null together.
    current:
      r.current_state === null
        ? null
        : {
            state: r.current_state as InstanceState,
            nodeId: r.current_node_id ?? '',
            pid: r.current_pid,
            host: r.current_host,
            port: r.current_port,
            restarts: r.current_restarts ?? 0,
            lastExit: r.current_last_exit,
            message: r.current_message,
            reportedAt: iso(r.current_reported_at ?? new Date(0)),
          },
  };
}

export function toNode(r: Selectable<NodesTable>): Node {
  return {
    id: r.id,
    name: r.name,
    address: r.address,
    labels: r.labels,
    status: r.status as Node['status'],
    draining: r.draining,
    roles: r.roles as Node['roles'],
    compartment: r.compartment,
    publicKey: r.public_key,
    lastSeenAt: isoOrNull(r.last_seen_at),
    createdAt: iso(r.created_at),
  };
}

export function toJob(r: Selectable<JobsTable>): Job {
  return {
    id: r.id,
    rootId: r.root_id,
    parentId: r.parent_id,
    kind: r.kind,
    title: r.title,
    state: r.state as JobState,
    tags: r.tags,
    params: r.params,
    error: r.error,
    createdAt: iso(r.created_at),
    startedAt: isoOrNull(r.started_at),
    finishedAt: isoOrNull(r.finished_at),
    position: r.position,
  };
}

export function toJoinToken(r: Selectable<JoinTokensTable>): JoinTokenRecord {
  return { id: r.id, hash: r.hash, reusable: r.reusable, expiresAt: iso(r.expires_at), usedAt: isoOrNull(r.used_at), createdAt: iso(r.created_at) };
}

export function toController(r: Selectable<ControllersTable>): ControllerRecord {
  return { id: r.id, apiUrl: r.api_url, startedAt: iso(r.started_at), lastSeenAt: iso(r.last_seen_at), leaderSince: isoOrNull(r.leader_since) };
}
