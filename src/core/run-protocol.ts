// The WebSocket protocol of `enjin run` between a client and the controller (GET /v1/projects/NAME/run, upgraded).
// Text frames carry these JSON messages; binary frames carry bytes: client → controller, the process's stdin;
// controller → client, its output, the first byte naming the stream (OUTPUT_STDOUT or OUTPUT_STDERR).
import type { JobState } from './model.ts';

export const OUTPUT_STDOUT = 1;
export const OUTPUT_STDERR = 2;

/** client → controller; `start` first, exactly once */
export type RunClientMessage =
  | { type: 'start'; command: string[]; service?: string; tty?: { rows: number; cols: number; term?: string } | null }
  /** the client's stdin ended: the process's stdin is closed */
  | { type: 'eof' }
  | { type: 'resize'; rows: number; cols: number }
  /** a signal for the process (a Ctrl-C on a client without a terminal) */
  | { type: 'signal'; signal: 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'SIGQUIT' };

/** controller → client */
export type RunServerMessage =
  /** the run's job tree exists: where it runs, and whether its build is being prepared first */
  | { type: 'job'; job: string; service: string; version: string; node: string; prepare: boolean }
  /** a line of the prepare's log, while the build is prepared on the node */
  | { type: 'progress'; line: string }
  | { type: 'started'; pid: number }
  /** something the user should know that is not the process's output (output lost on the bus) */
  | { type: 'notice'; message: string }
  /**
   * The last message: the job tree ended. exitCode is the process's (128+N for a signal), null if it never ran or
   * its end was not seen (then `error` says why).
   */
  | { type: 'exit'; job: string; state: JobState; exitCode: number | null; error: string | null }
  /** the run could not start (bad request, no release, no node); the connection closes after it */
  | { type: 'error'; error: { code: string; message: string } };
