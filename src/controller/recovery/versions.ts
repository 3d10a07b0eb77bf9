// Versions a recovery must rebuild: where each can be read from (gathered over the nodes' inventories), its package
// fetched back from a node that kept it (its manifest read from that package, as a deploy reads it), or else its
// manifest read from a node's unpacked copy, used only if it agrees with what the nodes were told to run.
import { rm } from 'node:fs/promises';
import { inspectPackageFile } from '../../artifact/inspect.ts';
import { EnjinError } from '../../core/errors.ts';
import { subjects, type AgentReply, type AgentRequest, type DesiredInstance } from '../../core/messages.ts';
import type { Manifest } from '../../core/model.ts';
import { manifestFrom, manifestFromFile } from '../../core/package-manifest.ts';
import { componentLogger } from '../../log/logger.ts';
import { BusPackageSource } from '../../sync/package-fetch.ts';
import type { Controller } from '../controller.ts';
import type { NodeFindings, ResolvedVersion } from './rebuild.ts';

const log = componentLogger('recovery');

/** What resolving needs: the controller (its bus, state and package store) and where to say what went wrong. */
export interface ResolveHost {
  controller: Pick<Controller, 'bus' | 'state' | 'packages'>;
  requestTimeoutMs: number;
  problem(line: string): void;
  /** a version rebuilt from an unpacked manifest, without its package */
  withoutPackage(what: string): void;
}

/** Where a version can be read from, gathered over every node's inventory. */
interface VersionLead {
  versionId: string;
  project: string | null;
  sha256: string;
  size: number | null;
  number: number | null;
  preparedAt: string | null;
  /** nodes that kept the package */
  packageOn: string[];
  /** nodes that have it unpacked */
  unpackedOn: string[];
  /** what instances of it were told to run, to check a manifest read from an unpacked directory */
  specs: DesiredInstance['spec'][];
  /** what a builder added, as the nodes were told it (a manifest read from an unpacked directory does not say it) */
  build: DesiredInstance['version']['build'] | null;
  paths: string[];
  pathEnv: Record<string, string>;
}

/** Every version the findings mention that the controller does not know, with its manifest and, where kept, its package. */
export async function resolveVersions(findings: NodeFindings[], h: ResolveHost): Promise<Map<string, ResolvedVersion>> {
  const leads = new Map<string, VersionLead>();
  const lead = (versionId: string, sha256: string): VersionLead => {
    let l = leads.get(versionId);
    if (!l) {
      l = { versionId, project: null, sha256, size: null, number: null, preparedAt: null, packageOn: [], unpackedOn: [], specs: [], build: null, paths: [], pathEnv: {} };
      leads.set(versionId, l);
    }
    return l;
  };
  for (const f of findings) {
    for (const d of f.inventory.desired) {
      const l = lead(d.version.versionId, d.version.sha256);
      l.project ??= d.version.project;
      l.size ??= d.version.size;
      if (d.version.build && !l.build) Object.assign(l, { build: d.version.build, paths: d.version.paths ?? [], pathEnv: d.version.pathEnv ?? {} });
      l.number ??= d.version.number ?? numberFromEnv(d.spec.env.ENJIN_VERSION);
      if (d.desired === 'running') l.specs.push(d.spec);
    }
    for (const k of f.inventory.versions) {
      const l = lead(k.versionId, k.sha256);
      l.project ??= k.project;
      l.size ??= k.size;
      l.number ??= k.number;
      l.preparedAt ??= k.preparedAt;
      if (k.packageKept && k.sha256 === l.sha256) l.packageOn.push(f.nodeId);
      l.unpackedOn.push(f.nodeId);
    }
  }
  const out = new Map<string, ResolvedVersion>();
  for (const l of leads.values()) {
    if (h.controller.state.versions.has(l.versionId) || !l.project) continue;
    try {
      const r = await resolveOne(l, h);
      if (r) out.set(l.versionId, r);
    } catch (err) {
      h.problem(`version ${l.versionId} of ${l.project}: ${(err as Error).message}`);
      log.warn({ err, versionId: l.versionId }, 'a version could not be rebuilt');
    }
  }
  return out;
}

async function resolveOne(l: VersionLead, h: ResolveHost): Promise<ResolvedVersion | null> {
  const project = l.project!;
  const base = { versionId: l.versionId, project, number: l.number, sha256: l.sha256, createdAt: l.preparedAt ?? new Date().toISOString() };
  // The package first: its manifest is the one deployed, whatever became of the unpacked files.
  for (const nodeId of l.packageOn) {
    const path = h.controller.packages.uploadPath();
    try {
      const source = new BusPackageSource(h.controller.bus, { subject: subjects.nodePackageChunk(nodeId), servedBy: `node ${nodeId}`, attempts: 3 });
      await source.fetch({ versionId: l.versionId, sha256: l.sha256, size: l.size ?? 0 }, path);
      const pkg = await inspectPackageFile(path, l.sha256);
      const { manifest } = manifestFrom(pkg, project);
      await h.controller.packages.adopt(l.sha256, path);
      log.info({ versionId: l.versionId, nodeId }, 'fetched a version\'s package back from a node');
      return { ...base, size: l.size ?? 0, manifest };
    } catch (err) {
      log.warn({ err, versionId: l.versionId, nodeId }, 'could not fetch the package back from this node; trying another');
    } finally {
      await rm(path, { force: true });
    }
  }
  // No package anywhere: the manifest from an unpacked directory, only if it agrees with what the nodes were told.
  for (const nodeId of l.unpackedOn) {
    try {
      const reply = await h.controller.bus.request<AgentReply>(subjects.agentRpc(nodeId), { op: 'version-manifest', versionId: l.versionId } satisfies AgentRequest, { timeoutMs: h.requestTimeoutMs });
      if (reply?.op !== 'version-manifest') throw new EnjinError('bad_reply', 'not a version-manifest reply', { status: 502 });
      const manifest = manifestFromFile(reply.file, reply.text, project);
      if (l.build) manifest.build = { builder: l.build.builder, reason: l.build.reason, paths: l.paths, pathEnv: l.pathEnv };
      const disagreement = disagrees(manifest, l.specs);
      if (disagreement) {
        h.problem(`version ${l.versionId} of ${project}: the ${reply.file} unpacked on ${nodeId} does not match what the node was told to run (${disagreement}); not used`);
        continue;
      }
      h.withoutPackage(`${project} ${l.versionId}`);
      return { ...base, size: l.size ?? 0, manifest };
    } catch (err) {
      log.warn({ err, versionId: l.versionId, nodeId }, 'could not read the manifest of an unpacked version from this node');
    }
  }
  h.problem(`version ${l.versionId} of ${project}: no node kept its package or could give its manifest`);
  return null;
}

function numberFromEnv(value: string | undefined): number | null {
  const n = Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** A manifest read from a tenant-writable directory must say what the controller had told the nodes to run. */
function disagrees(manifest: Manifest, specs: DesiredInstance['spec'][]): string | null {
  for (const spec of specs) {
    const service = manifest.services[spec.service];
    if (!service) return `it has no service ${spec.service}`;
    if (service.command !== spec.command) return `service ${spec.service} runs another command`;
  }
  return null;
}
