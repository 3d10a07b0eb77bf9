// Durations on the command line, in milliseconds: the grammar of core/durations.ts ("30s", "5m", "1h", "7d",
// "250ms", "1m30s", or a bare number of seconds), so a flag reads like enjin.yaml.
import { parseDurationSeconds } from '../../core/durations.ts';

export function parseDuration(flag: string, value: string): number {
  return Math.round(parseDurationSeconds(flag, value) * 1000);
}
