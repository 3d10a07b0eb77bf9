// The one duration grammar of enjin, for enjin.yaml and the command line: "500ms", "10s", "5m", "1h", "7d", parts
// joined largest first ("1m30s", "1h 30m"), or a bare number of seconds (a YAML number or a string of digits).
import { EnjinError } from './errors.ts';

export const DURATION_RULE = 'a duration such as 10s, 500ms or 5m, or a number of seconds';

const UNIT_SECONDS: Record<string, number> = { d: 86_400, h: 3_600, m: 60, s: 1, ms: 0.001 };
/** Largest first: "1m30s" reads naturally, "30s1m" or "5s5s" is a typo worth reporting. */
const UNIT_ORDER = ['d', 'h', 'm', 's', 'ms'];
const PART = /(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)/gy;

/** Seconds (possibly fractional), or null when the value is not a duration. Negative values are not durations. */
export function durationSeconds(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : null;
  if (typeof value !== 'string') return null;
  const text = value.trim().toLowerCase();
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text);
  if (text === '') return null;
  let total = 0;
  let lastRank = -1;
  let at = 0;
  PART.lastIndex = 0;
  while (at < text.length) {
    PART.lastIndex = at;
    const m = PART.exec(text);
    if (!m) return null;
    const rank = UNIT_ORDER.indexOf(m[2]);
    if (rank <= lastRank) return null;
    lastRank = rank;
    total += Number(m[1]) * UNIT_SECONDS[m[2]];
    at = PART.lastIndex;
    while (text[at] === ' ') at++;
  }
  // Sums of decimal parts such as 0.1s + 200ms carry float noise; a microsecond is finer than anything enjin times.
  return Math.round(total * 1e6) / 1e6;
}

/** Seconds, or an invalid_request error naming `what` (a flag or a field) and saying what is accepted. */
export function parseDurationSeconds(what: string, value: unknown): number {
  const seconds = durationSeconds(value);
  if (seconds === null) {
    throw new EnjinError('invalid_request', `${what} must be ${DURATION_RULE} (got ${JSON.stringify(value)})`);
  }
  return seconds;
}

/** "90s" → "1m30s": how a duration is shown back to the user, in the grammar they write. */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let ms = Math.round(seconds * 1000);
  let out = '';
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = UNIT_SECONDS[unit] * 1000;
    const n = Math.floor(ms / size);
    if (n) out += `${n}${unit}`;
    ms -= n * size;
  }
  return ms ? `${out}${ms}ms` : out;
}
