// Durations on the command line: "30s", "5m", "1h", "7d", "250ms", or a bare number of seconds.
import { EnjinError } from '../../core/errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(flag: string, value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(String(value));
  if (!m) throw new EnjinError('invalid_request', `${flag} must be a duration such as 30s, 5m, 1h or 7d (got ${JSON.stringify(value)})`);
  return Math.round(Number(m[1]) * UNIT_MS[(m[2] ?? 's').toLowerCase()]);
}
