// What every cluster role returns, and how its parts stop: newest first, each failure logged, the rest still stopped.
import { componentLogger } from '../../log/logger.ts';

const log = componentLogger('roles');

export interface RunningRole {
  stop(): Promise<void>;
}

export async function stopInOrder(started: Array<() => Promise<void>>): Promise<void> {
  for (const stop of started.splice(0).reverse()) {
    await stop().catch((err: unknown) => log.error({ err }, 'a component failed to stop; stopping the rest'));
  }
}
