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
  if (s.health !== undefined && s.health !== null) checkHealth(s.instanceId, s.health);
  if (s.restart !== undefined) checkRestart(s.instanceId, s.restart);
  return s;
}

const seconds = (v: unknown, positive: boolean): boolean => typeof v === 'number' && Number.isFinite(v) && (positive ? v > 0 : v >= 0);

/** A health check from the bus: its command reaches a shell, and a zero interval would probe without pause. */
function checkHealth(id: string, h: unknown): void {
  const c = h as Record<string, unknown>;
  if (typeof c !== 'object' || Array.isArray(c)) throw invalid(`instance ${id}: health must be an object`);
  for (const f of ['http', 'expect', 'host', 'command'] as const) {
    if (c[f] !== undefined && typeof c[f] !== 'string') throw invalid(`instance ${id}: health.${f} must be a string`);
  }
  if (c.tcp !== undefined && typeof c.tcp !== 'boolean') throw invalid(`instance ${id}: health.tcp must be true or false`);
  for (const f of ['interval', 'timeout'] as const) {
    if (c[f] !== undefined && !seconds(c[f], true)) throw invalid(`instance ${id}: health.${f} must be a number of seconds above 0`);
  }
  for (const f of ['retries', 'grace', 'startTimeout'] as const) {
    if (c[f] !== undefined && !seconds(c[f], false)) throw invalid(`instance ${id}: health.${f} must be a number, 0 or more`);
  }
}

function checkRestart(id: string, r: unknown): void {
  const p = r as Record<string, unknown> & { backoff?: Record<string, unknown> };
  if (!p || typeof p !== 'object') throw invalid(`instance ${id}: restart must be an object`);
  if (!['always', 'on-failure', 'never'].includes(p.policy as string)) throw invalid(`instance ${id}: restart.policy must be always, on-failure or never`);
  if (!seconds(p.maxAttempts, false) || !seconds(p.window, false)) throw invalid(`instance ${id}: restart.maxAttempts and restart.window must be numbers, 0 or more`);
  if (!p.backoff || !seconds(p.backoff.initial, false) || !seconds(p.backoff.max, false)) throw invalid(`instance ${id}: restart.backoff.initial and max must be numbers of seconds, 0 or more`);
}

/** The version whose prepared directory an instance runs in: its build (a config release runs an earlier version's). */
export function buildOf(spec: InstanceSpec): string {
  return spec.buildId ?? spec.versionId;
}
