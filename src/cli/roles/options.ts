// Parsers of the cluster roles' options (labels, port ranges) and how a role process ends: on SIGINT or SIGTERM it
// stops its parts in order and exits; a second signal exits at once.
import { EnjinError, formatError } from '../../core/errors.ts';
import type { RunningRole } from './running.ts';

/** "zone=a,disk=ssd" → { zone: 'a', disk: 'ssd' } */
export function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new EnjinError('invalid_request', `--labels must look like zone=a,disk=ssd (got ${JSON.stringify(part)})`);
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return labels;
}

export function parsePortRange(text: string): [number, number] {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  const [from, to] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(from > 0 && to >= from && to < 65536)) throw new EnjinError('invalid_request', `--port-range must look like 20000-29999 (got ${text})`);
  return [from, to];
}

export function stopOnSignals(running: RunningRole, what: string, quiet: boolean): void {
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      process.stderr.write('stopping now, without waiting\n');
      process.exit(130);
    }
    stopping = true;
    if (!quiet) process.stderr.write(`\n${signal}: stopping the ${what}…\n`);
    running.stop().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`${formatError(err)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}
