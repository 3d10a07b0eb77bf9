// `enjin up`: controller, agent and router on this machine, on an embedded store, until Ctrl-C.
import { Option, type Command } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EnjinError } from '../../core/errors.ts';
import { parseSize, toCount, toPort } from '../arguments.ts';
import { globals, print } from '../program.ts';
import { stopOnSignals } from '../roles/options.ts';
import { parseDuration } from '../roles/durations.ts';

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('run controller and agent in this process and the router in a child process, on an embedded store (Ctrl-C stops all of it)')
    .addOption(new Option('--api-port <port>', 'API port').default(7070).argParser(toPort))
    .addOption(new Option('--router-port <port>', 'router (HTTP) port').default(8080).argParser(toPort))
    .option('--api-host <host>', 'address the API listens on', '127.0.0.1')
    .option('--router-host <host>', 'address the router listens on', '0.0.0.0')
    .option('--domain <domain>', 'domain of generated hostnames SERVICE.PROJECT.DOMAIN', 'localhost')
    .option('--database-url <url>', 'use a PostgreSQL server instead of the embedded store')
    .addOption(new Option('--port-range <from-to>', 'ports given to instances').default('20000-29999'))
    .addOption(new Option('--router-max-connections <n>', 'client connections the router accepts (default: from the descriptor limit)').argParser(toCount))
    .addOption(new Option('--min-free-disk <size>', 'below this much free disk for versions and logs the node warns and takes nothing new (e.g. 512M, 2G)').default('1G'))
    .addOption(new Option('--event-retention <duration>', 'how long `enjin events` keeps what happened (e.g. 12h, 7d)').default('7d'))
    .option('--instance-memory <size>', 'memory limit of each instance, e.g. 512M or 2G, or off (default: 1G, or half the host\'s memory if less)')
    .action(async (o) => {
      // First, so that every role started from here (and every child: router, instances) has the raised limit.
      const { raiseNofileLimit } = await import('../../process/fd-limit.ts');
      process.stderr.write(`${raiseNofileLimit().message}\n`);
      const { up, parseMemorySize } = await import('../up.ts');
      const instanceMemoryBytes = o.instanceMemory === undefined ? undefined : parseMemorySize(String(o.instanceMemory));
      const dataDir = resolve(globals().data ?? process.env.ENJIN_DATA ?? '.enjin');
      const [from, to] = String(o.portRange).split('-').map(Number);
      if (!(from > 0 && to >= from && to < 65536)) throw new EnjinError('invalid_request', `--port-range must look like 20000-29999 (got ${o.portRange})`);
      if (!globals().json) {
        const first = !existsSync(join(dataDir, 'store')) && !o.databaseUrl;
        process.stderr.write(first ? `starting enjin in ${dataDir} (the first start creates its store: a few seconds)…\n` : `starting enjin in ${dataDir}…\n`);
      }
      const running = await up({
        dataDir, apiHost: o.apiHost, apiPort: o.apiPort, routerHost: o.routerHost, routerPort: o.routerPort, domain: o.domain,
        databaseUrl: o.databaseUrl ?? process.env.ENJIN_DATABASE_URL, portRange: [from, to], routerMaxConnections: o.routerMaxConnections,
        minFreeDiskBytes: parseSize('--min-free-disk', o.minFreeDisk), instanceMemoryBytes,
        eventRetentionMs: parseDuration('--event-retention', String(o.eventRetention)),
      });
      print({ api: running.apiUrl, router: `http://${o.routerHost}:${running.routerPort}`, routerMaxConnections: running.routerMaxConnections, data: dataDir, credentials: running.credentialsFile }, () => [
        `enjin is up`,
        `  API          ${running.apiUrl}  (token in ${running.credentialsFile})`,
        `  router       http://${o.routerHost === '0.0.0.0' ? '127.0.0.1' : o.routerHost}:${running.routerPort}  (apps at http://SERVICE.PROJECT.${o.domain}:${running.routerPort}; at most ${running.routerMaxConnections} connections)`,
        `  data         ${dataDir}`,
        `deploy a directory with: enjin deploy DIR   (Ctrl-C stops everything)`,
      ].join('\n'));
      stopOnSignals(running, 'instances, router, agent and controller', globals().json === true);
    });
}
