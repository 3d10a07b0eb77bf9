// The bus side of `enjin run`: what the controller tells an agent to start, and the messages each way while the
// one-off process runs (its client's side, a WebSocket to the controller, is run-protocol.ts).
import type { VersionSpec } from './messages.ts';

/**
 * A one-off process (`enjin run`) in a release's environment, as the agent is told to start it. Its output, exit and
 * keepalives then travel on subjects.runOutput, its input on subjects.runInput.
 */
export interface OneOffRunSpec {
  /** names the run's subjects and its cgroup: a token of a subject (no dots) */
  runId: string;
  project: string;
  service: string;
  /** the build to run in (prepared on this node): the release's build, with its paths */
  version: VersionSpec;
  /** a shell command line, run with `sh -c` as the app's user in the build's directory */
  command: string;
  /**
   * when the user gave several words: those words, which the agent runs as they are (exec'd, so no shell stays in
   * between to die of a signal the program handles); `command` is then their quoted form, for people
   */
  argv?: string[];
  /** the release's environment for `service` (may hold secrets: never written to disk or logged) */
  env: Record<string, string>;
  /** a pseudo-terminal of this size and TERM; null: plain pipes */
  tty: { rows: number; cols: number; term: string } | null;
  /** the service's volumes (name → path), passed as ENJIN_VOLUME_<NAME> as to its instances; absent: none */
  volumes?: Record<string, string>;
  /** the project's workspace, which names its volumes' directories; absent: 'default' */
  workspace?: string;
}

/** The most bytes one output or stdin chunk carries (base64 on the wire), well under NATS' default max payload. */
export const RUN_CHUNK_MAX_BYTES = 64 * 1024;

/**
 * agent → controller. `output` and `exit` carry a seq (1, 2, …) so the controller sees order and loss; `exit` comes
 * after every output chunk. `alive` (no seq) every few seconds while the process runs; `stdin-ack` says how many
 * stdin bytes the process has taken in all (the controller stops reading its client ahead of that).
 */
export type RunOutputMessage =
  | { kind: 'output'; seq: number; stream: 'stdout' | 'stderr'; data: string }
  | { kind: 'exit'; seq: number; code: number | null; signal: string | null; exitCode: number; message?: string }
  | { kind: 'alive' }
  | { kind: 'stdin-ack'; bytes: number };

/**
 * controller → agent. `stdin` chunks carry a seq (1, 2, …); `eof` closes the process's stdin; `ack` says how many
 * output bytes the controller has passed on in all (the agent stops reading the process's output ahead of that);
 * `kill` ends the process and everything it started; `alive` every few seconds (the agent kills a run it stops hearing from).
 */
export type RunInputMessage =
  | { kind: 'stdin'; seq: number; data: string }
  | { kind: 'eof' }
  | { kind: 'resize'; rows: number; cols: number }
  | { kind: 'signal'; signal: 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'SIGQUIT' }
  | { kind: 'ack'; bytes: number }
  | { kind: 'kill' }
  | { kind: 'alive' };
