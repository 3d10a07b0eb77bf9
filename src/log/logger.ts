// enjin's own log: pino on stderr, one child logger per component, so a line always says who wrote it. JSON lines
// for machines (a service manager, a log shipper, the cluster roles in the background); readable lines on a terminal.
import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

/** ENJIN_LOG_FORMAT=json|pretty; by default pretty when stderr is a terminal, JSON otherwise. */
function destination(): pino.DestinationStream {
  const format = process.env.ENJIN_LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
  // Synchronous, in this thread: a crash still gets its last lines out, and no worker thread is started for it.
  if (format === 'pretty') return PinoPretty({ destination: 2, sync: true, ignore: 'pid,hostname,name', translateTime: 'HH:MM:ss.l' });
  return pino.destination(2);
}

/** ENJIN_LOG_LEVEL=debug|info|warn|error|silent; info by default. */
const root: Logger = pino({ name: 'enjin', level: process.env.ENJIN_LOG_LEVEL ?? 'info' }, destination());

export function componentLogger(component: string): Logger {
  return root.child({ component });
}

export type { Logger };
