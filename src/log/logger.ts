// enjin's own log: pino on stderr, one child logger per component, so a line always says who wrote it.
import { pino, type Logger } from 'pino';

/** ENJIN_LOG_LEVEL=debug|info|warn|error|silent; info by default. */
const root: Logger = pino({ name: 'enjin', level: process.env.ENJIN_LOG_LEVEL ?? 'info' }, pino.destination(2));

export function componentLogger(component: string): Logger {
  return root.child({ component });
}

export type { Logger };
