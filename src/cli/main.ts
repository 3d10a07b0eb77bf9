// The `enjin` command line: every command talks to the controller's API through the typed client (except `up`),
// prints for people by default and JSON with --json, and sends errors to stderr with a non-zero exit.
import { CommanderError } from 'commander';
import { EnjinError, formatError } from '../core/errors.ts';
import { registerAgent } from './commands/agent.ts';
import { registerCluster } from './commands/cluster.ts';
import { registerController } from './commands/controller.ts';
import { registerDeploy } from './commands/deploy.ts';
import { registerDestroy } from './commands/destroy.ts';
import { registerVolumes } from './commands/volumes.ts';
import { registerJobs } from './commands/jobs.ts';
import { registerLogs } from './commands/logs.ts';
import { registerNodes } from './commands/nodes.ts';
import { registerOpen } from './commands/open.ts';
import { registerProjects } from './commands/projects.ts';
import { registerPs } from './commands/ps.ts';
import { registerRollback } from './commands/rollback.ts';
import { registerRouter } from './commands/router.ts';
import { registerScale } from './commands/scale.ts';
import { registerRestart } from './commands/restart.ts';
import { registerRun } from './commands/run.ts';
import { registerStats } from './commands/stats.ts';
import { registerUp } from './commands/up.ts';
import { registerVersions } from './commands/versions.ts';
import { registerConfig } from './commands/config.ts';
import { registerReleases } from './commands/releases.ts';
import { registerEvents } from './commands/events.ts';
import { registerProjectControl } from './commands/project-control.ts';
import { program, type GlobalOpts } from './program.ts';

// In this order in `enjin --help`.
for (const register of [registerUp, registerDeploy, registerPs, registerLogs, registerScale, registerRestart, registerRun, registerVersions, registerReleases, registerRollback, registerConfig, registerJobs, registerEvents, registerProjects, registerOpen, registerProjectControl, registerDestroy, registerVolumes, registerNodes, registerStats, registerController, registerAgent, registerRouter, registerCluster]) {
  register(program);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    if (program.opts<GlobalOpts>().json) process.stderr.write(`${JSON.stringify({ error: err instanceof EnjinError ? err.toJSON() : { code: 'internal', message: (err as Error).message } })}\n`);
    else process.stderr.write(`${formatError(err)}\n`);
    process.exitCode = 1;
  }
}
