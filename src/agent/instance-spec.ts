// The check of instance specs from the controller: the agent trusts nothing that arrives over the bus.
import { invalid } from '../core/errors.ts';
import type { InstanceSpec } from '../core/messages.ts';
import { checkId } from './versions.ts';

/** Checks a spec that arrived over the bus before any of it reaches the file system or a shell. */
export function checkSpec(spec: unknown): InstanceSpec {
  const s = spec as InstanceSpec;
  if (!s || typeof s !== 'object') throw invalid('start needs an instance spec');
  checkId('instance', s.instanceId);
  checkId('version', s.versionId);
  if (s.buildId !== undefined) checkId('version', s.buildId);
  if (typeof s.command !== 'string' || !s.command.trim()) throw invalid(`instance ${s.instanceId} has no command`);
  for (const f of ['startTimeout', 'stopTimeout'] as const) {
    if (typeof s[f] !== 'number' || !(s[f] >= 0)) throw invalid(`instance ${s.instanceId}: ${f} must be a number of seconds`);
  }
  if (!s.env || typeof s.env !== 'object' || Object.values(s.env).some((v) => typeof v !== 'string')) {
    throw invalid(`instance ${s.instanceId}: env must map names to strings`);
  }
  return s;
}

/** The version whose prepared directory an instance runs in: its build (a config release runs an earlier version's). */
export function buildOf(spec: InstanceSpec): string {
  return spec.buildId ?? spec.versionId;
}
