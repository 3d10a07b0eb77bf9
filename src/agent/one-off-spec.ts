// What the agent accepts as a one-off run (`enjin run`) from the bus, and the shell command that runs it: checked
// before any of it reaches a shell or the file system, as instance-spec.ts does for instances.
import { invalid } from '../core/errors.ts';
import type { OneOffRunSpec, RunInputMessage } from '../core/run-messages.ts';
import { checkId, checkVersion } from './version-spec.ts';
import { NOT_EXECUTABLE } from './drivers/shell-command.ts';

/** The longest command line a run may have: far more than a person types, far less than a bus message may carry. */
const MAX_COMMAND_CHARS = 64 * 1024;
const TERM_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/;

/** Checks a run spec that arrived over the bus. */
export function checkRunSpec(spec: unknown): OneOffRunSpec {
  const s = spec as OneOffRunSpec;
  if (!s || typeof s !== 'object') throw invalid('run needs a run spec');
  // The run id becomes a token of bus subjects and part of a cgroup's and a file's name.
  if (checkId('run', s.runId).includes('.')) throw invalid(`run id ${s.runId} must not contain '.'`);
  checkId('project', s.project);
  checkId('service', s.service);
  checkVersion(s.version);
  if (typeof s.command !== 'string' || !s.command.trim()) throw invalid(`run ${s.runId} has no command`);
  if (s.command.length > MAX_COMMAND_CHARS || s.command.includes('\0')) throw invalid(`run ${s.runId}: the command must be text of at most ${MAX_COMMAND_CHARS} characters`);
  if (s.argv !== undefined && (!Array.isArray(s.argv) || !s.argv.length || s.argv.some((w) => typeof w !== 'string' || w.includes('\0')) || s.argv.join(' ').length > MAX_COMMAND_CHARS)) {
    throw invalid(`run ${s.runId}: argv must be a list of words (text, no NUL)`);
  }
  if (!s.env || typeof s.env !== 'object' || Object.values(s.env).some((v) => typeof v !== 'string')) throw invalid(`run ${s.runId}: env must map names to strings`);
  if (s.tty !== null) {
    const t = s.tty;
    if (!t || typeof t !== 'object' || !validSize(t.rows) || !validSize(t.cols) || typeof t.term !== 'string' || !TERM_PATTERN.test(t.term)) {
      throw invalid(`run ${s.runId}: tty must be null or { rows, cols (1 to 10000), term (a terminal type such as xterm-256color) }`);
    }
  }
  return s;
}

export const validSize = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 10_000;

const SIGNALS = new Set(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']);

/** A message for a run from the bus, or null if it is malformed (then it is dropped and logged by the caller). */
export function checkRunInput(data: unknown): RunInputMessage | null {
  const m = data as RunInputMessage;
  if (!m || typeof m !== 'object') return null;
  switch (m.kind) {
    case 'stdin':
      return Number.isSafeInteger(m.seq) && typeof m.data === 'string' ? m : null;
    case 'resize':
      return validSize(m.rows) && validSize(m.cols) ? m : null;
    case 'signal':
      return SIGNALS.has(m.signal) ? m : null;
    case 'ack':
      return Number.isSafeInteger(m.bytes) && m.bytes >= 0 ? m : null;
    case 'eof':
    case 'kill':
    case 'alive':
      return m;
    default:
      return null;
  }
}

/** 'it' → `'it'`, safe to paste into a `sh -c` command line whatever it holds. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command the driver runs. With a terminal: util-linux `script` allocates a pseudo-terminal (no native module
 * needed), sized before the command starts, and passes the command's exit status on (-e; 128+N for a signal); its
 * typescript goes to /dev/null, the terminal's output to our pipe. Without: the command as it is, on plain pipes.
 */
export function runCommandLine(spec: Pick<OneOffRunSpec, 'command' | 'tty' | 'argv'>): string {
  const line = spec.argv ? wordsLine(spec.argv) : spec.command;
  if (!spec.tty) return line;
  const inner = `stty rows ${spec.tty.rows} cols ${spec.tty.cols} 2>/dev/null; ${line}`;
  // SHELL: what `script` runs the command with; the release's env might name a shell this node lacks.
  return `SHELL=/bin/sh exec script -q -e -c ${shellQuote(inner)} /dev/null`;
}

/**
 * Words run as they are: exec'd when the first is a program, so the program is the process (its pid, its signals,
 * its exit status) rather than a child of a shell that may die first of a signal the program handles.
 */
function wordsLine(argv: string[]): string {
  const quoted = argv.map(shellQuote).join(' ');
  return NOT_EXECUTABLE.has(argv[0]) || argv[0].includes('=') || argv[0] === '' ? quoted : `exec ${quoted}`;
}

/** A shell's exit status for how a process ended: its code, or 128 + the number of the signal that killed it. */
export function exitStatus(code: number | null, signal: string | null, signalNumber: (s: string) => number | undefined): number {
  if (code !== null) return code;
  if (signal) return 128 + (signalNumber(signal) ?? 0);
  // Neither: the exit could not be observed; say "failed" the way a shell says it cannot tell.
  return 255;
}
