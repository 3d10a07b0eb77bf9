// From what nodes hold to the rows a store lost: nodes, projects, versions and placements. Pure: it reads the
// controller's memory and the nodes' inventories and says what to write; recovery.ts fetches and writes.
//
// The rules, where the nodes cannot say everything:
// - placements are the truth: every instance a node was told to run comes back on that node, with its id, so the
//   nodes keep running what they run (same processes) and the reconciler has nothing to trim;
// - a project's current (and routed) version is the newest one its instances run;
// - a service's count is the number of its instances found, kept as a scale override when it differs from the
//   manifest; a service with no instance found anywhere comes back at its manifest's count;
// - a node that reports late (after the first rebuild) only adds: its instances raise their service's count.
import type { DesiredInstance, NodeInventory } from '../../core/messages.ts';
import type { Instance, Manifest, Node, Project, Version, Workspace } from '../../core/model.ts';
import type { ControllerState } from '../state.ts';

/** One node's answer to the census, with the key it proved. */
export interface NodeFindings {
  nodeId: string;
  publicKey: string;
  inventory: NodeInventory;
}

/** A version whose manifest was read (from a package a node kept, or from its unpacked directory). */
export interface ResolvedVersion {
  versionId: string;
  project: string;
  /** as the nodes were told it; null: unknown (numbered after the known ones) */
  number: number | null;
  sha256: string;
  size: number;
  manifest: Manifest;
  createdAt: string;
}

/** What one project needs written: versions and instances first, the project row last (it is what the reconciler reads). */
export interface ProjectRebuild {
  workspace: Workspace;
  project: Project;
  created: boolean;
  versions: Version[];
  instances: Instance[];
}

export interface RebuildPlan {
  nodes: Node[];
  /** workspaces to create (the projects' workspaces that the store does not have) */
  workspaces: Workspace[];
  projects: ProjectRebuild[];
  /** what could not be rebuilt, one line each, for the operator */
  problems: string[];
}

export interface RebuildInput {
  state: ControllerState;
  findings: NodeFindings[];
  versions: Map<string, ResolvedVersion>;
  now: string;
  newId: (prefix: 'prj' | 'ws') => string;
}

export function rebuild(input: RebuildInput): RebuildPlan {
  const { state, now } = input;
  const problems: string[] = [];
  const nodes = input.findings.map((f) => nodeRow(state.nodes.get(f.nodeId), f, now));

  // Every instance a node was told to run, once (the first node by id keeps an id claimed twice).
  const placed = new Map<string, { nodeId: string; d: DesiredInstance }>();
  for (const f of [...input.findings].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))) {
    for (const d of f.inventory.desired) {
      if (d.desired !== 'running') continue;
      const id = d.spec.instanceId;
      if (state.instances.has(id)) continue;
      const other = placed.get(id);
      if (other) {
        problems.push(`instance ${id} is desired on both ${other.nodeId} and ${f.nodeId}; kept on ${other.nodeId}, ${f.nodeId}'s copy is left unmanaged`);
        continue;
      }
      placed.set(id, { nodeId: f.nodeId, d });
    }
  }

  // Grouped by project (workspace name and project name, as the nodes were told them).
  const groups = new Map<string, { workspace: string; project: string; rows: Array<{ nodeId: string; d: DesiredInstance }> }>();
  for (const row of placed.values()) {
    const key = `${row.d.spec.workspace}\u0000${row.d.spec.project}`;
    const g = groups.get(key) ?? { workspace: row.d.spec.workspace, project: row.d.spec.project, rows: [] };
    g.rows.push(row);
    groups.set(key, g);
  }
  // Versions kept on nodes but run by no instance: history (rollback targets) of the projects being rebuilt.
  const history = new Map<string, ResolvedVersion[]>();
  for (const v of input.versions.values()) history.set(v.project, [...(history.get(v.project) ?? []), v]);

  const workspaces: Workspace[] = [];
  const projects: ProjectRebuild[] = [];
  for (const g of groups.values()) {
    let workspace = state.workspaceByName(g.workspace) ?? workspaces.find((w) => w.name === g.workspace);
    if (!workspace) {
      workspace = { id: input.newId('ws'), name: g.workspace, createdAt: now };
      workspaces.push(workspace);
    }
    const rebuilt = rebuildProject(state, workspace, g.project, g.rows, history.get(g.project) ?? [], input, problems);
    if (rebuilt) projects.push(rebuilt);
  }
  return { nodes, workspaces, projects, problems };
}

function nodeRow(existing: Node | undefined, f: NodeFindings, now: string): Node {
  const n = f.inventory.node;
  return {
    ...(existing ?? { status: 'ready', draining: false, lastSeenAt: now, createdAt: now }),
    id: f.nodeId,
    name: n.name,
    address: n.address,
    labels: n.labels,
    roles: n.roles.length ? n.roles : ['agent'],
    compartment: n.compartment,
    publicKey: f.publicKey,
    capacity: n.capacity ?? existing?.capacity ?? null,
    disk: n.disk ?? existing?.disk ?? null,
  } as Node;
}

function rebuildProject(
  state: ControllerState,
  workspace: Workspace,
  name: string,
  rows: Array<{ nodeId: string; d: DesiredInstance }>,
  kept: ResolvedVersion[],
  input: RebuildInput,
  problems: string[],
): ProjectRebuild | null {
  const existing = state.projectByName(workspace.id, name);
  const projectId = existing?.id ?? input.newId('prj');
  const known = new Map<string, Version>(existing ? state.versionsOf(existing.id).map((v) => [v.id, v]) : []);

  // Versions: those already known, then the resolved ones (numbers as told, else after the highest known).
  const added: Version[] = [];
  const resolved = [...kept].sort((a, b) => (a.versionId < b.versionId ? -1 : 1)).filter((v) => !known.has(v.versionId) && !state.versions.has(v.versionId));
  const used = new Set([...known.values()].map((v) => v.number));
  let next = Math.max(0, ...used, ...resolved.map((v) => v.number ?? 0)) + 1;
  for (const v of resolved) {
    let number = v.number;
    if (number === null || used.has(number)) {
      if (number !== null) problems.push(`${name}: two versions claim v${number}; ${v.versionId} becomes v${next}`);
      number = next++;
    }
    used.add(number);
    const version: Version = { id: v.versionId, projectId, number, sha256: v.sha256, size: v.size, manifest: v.manifest, createdAt: v.createdAt };
    added.push(version);
    known.set(version.id, version);
  }

  // Instances whose version and service are known come back as they run.
  const instances: Instance[] = [];
  for (const { nodeId, d } of rows) {
    const version = known.get(d.spec.versionId);
    if (!version) {
      problems.push(`${name}: instance ${d.spec.instanceId} on ${nodeId} runs version ${d.spec.versionId}, whose manifest no node could give; it keeps running, listed as unmanaged`);
      continue;
    }
    if (!version.manifest.services[d.spec.service]) {
      problems.push(`${name}: instance ${d.spec.instanceId} on ${nodeId} is of service ${d.spec.service}, which v${version.number}'s manifest does not have; it keeps running, listed as unmanaged`);
      continue;
    }
    instances.push({ id: d.spec.instanceId, workspaceId: workspace.id, projectId, service: d.spec.service, versionId: version.id, nodeId, desired: 'running', createdAt: input.now, current: null });
  }
  if (!instances.length && !existing) {
    if (rows.length) problems.push(`${name}: none of its instances could be rebuilt; the project is not recreated`);
    return null;
  }

  const live = [...(existing ? state.instancesOf(existing.id).filter((i) => i.desired === 'running') : []), ...instances];
  const newest = live.map((i) => known.get(i.versionId)!).filter(Boolean).sort((a, b) => b.number - a.number)[0];
  const currentVersionId = existing?.currentVersionId ?? newest?.id ?? null;
  const current = currentVersionId ? known.get(currentVersionId) ?? state.versions.get(currentVersionId) : undefined;

  // Counts: what was found, as an override where it differs from the manifest; never fewer than already desired.
  const scale: Record<string, number> = { ...(existing?.scale ?? {}) };
  for (const [service, spec] of Object.entries(current?.manifest.services ?? {})) {
    const found = live.filter((i) => i.service === service).length;
    if (found === 0) continue;
    const desired = scale[service] ?? spec.instances;
    if (existing ? found > desired : found !== spec.instances) scale[service] = found;
  }
  const project: Project = existing
    ? { ...existing, scale }
    : { id: projectId, workspaceId: workspace.id, name, currentVersionId, routedVersionId: currentVersionId, scale, createdAt: input.now, updatedAt: input.now };
  return { workspace, project, created: !existing, versions: added, instances };
}
