// Hostname ownership: a hostname belongs to one project, and the names under PROJECT.DOMAIN to PROJECT alone.
import { EnjinError } from '../core/errors.ts';
import type { Manifest } from '../core/model.ts';
import type { ControllerState } from './state.ts';
import { generatedNamespaceOwner } from './routes/build.ts';

/**
 * The error for a manifest that claims hostnames another project serves or is about to serve, or names under
 * another project's generated names (SERVICE.PROJECT.DOMAIN), which are reserved for that project; null if none.
 * Each detail carries the manifest path of the offending hostname, so the API can give its line and column.
 */
export function hostnameClashes(state: ControllerState, projectId: string | null, projectName: string, manifest: Manifest, domain: string): EnjinError | null {
  const taken = new Map<string, string>();
  for (const p of state.projects.values()) {
    if (p.id === projectId) continue;
    for (const vid of new Set([p.currentVersionId, p.routedVersionId])) {
      const v = vid ? state.versions.get(vid) : undefined;
      for (const s of Object.values(v?.manifest.services ?? {})) for (const h of s.hostnames) taken.set(h, p.name);
    }
  }
  const clashes: Array<{ path: string; message: string }> = [];
  for (const [service, s] of Object.entries(manifest.services)) {
    s.hostnames.forEach((h, index) => {
      const path = `services.${service}.hostnames.${index}`;
      const reservedFor = generatedNamespaceOwner(h, domain);
      if (reservedFor && reservedFor !== projectName) {
        clashes.push({ path, message: `${h} is under ${reservedFor}.${domain}, reserved for the generated names of project ${reservedFor} (SERVICE.${reservedFor}.${domain})` });
        return;
      }
      const owner = taken.get(h);
      if (owner) clashes.push({ path, message: `${h} is served by project ${owner}` });
    });
  }
  if (!clashes.length) return null;
  return new EnjinError('hostname_taken', `${clashes.length} hostname(s) already belong to another project; choose others or destroy that project first`, { status: 409, details: clashes });
}
