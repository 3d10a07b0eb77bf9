// `enjin router`: run a cluster node that carries HTTP traffic for the whole cluster until stopped.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { toPort } from '../arguments.ts';
import { globals, print } from '../program.ts';

export function registerRouter(program: Command): void {
  program
    .command('router')
    .description('run a node that routes HTTP traffic by hostname to every instance of the cluster')
    .option('--join <url>', "the controller's API, e.g. http://10.0.0.1:7000 (first start only)")
    .option('--token <token>', 'a join token from `enjin nodes token` (first start only)')
    .option('--name <name>', "the node's name (default: as it last ran, else the host name)")
    .option('--labels <k=v,…>', 'labels, e.g. zone=a')
    .option('--compartment <path>', 'where the node sits, e.g. dc1/rack-a')
    .option('--advertise-host <ip>', "this node's address (default: this host's address towards the controller)")
    .addOption(new Option('--port <port>', 'HTTP port').default(8080).argParser(toPort))
    .option('--host <host>', 'address to listen on', '0.0.0.0')
    .action(async (o) => {
      const { raiseNofileLimit } = await import('../../process/fd-limit.ts');
      const quiet = !!globals().json;
      const say = (line: string) => quiet || process.stderr.write(`${line}\n`);
      say(raiseNofileLimit().message);
      const { parseLabels, stopOnSignals } = await import('../roles/options.ts');
      const { runRouter } = await import('../roles/router.ts');
      const dataDir = resolve(globals().data ?? process.env.ENJIN_DATA ?? '.enjin');
      const running = await runRouter({
        dataDir, join: o.join, token: o.token ?? process.env.ENJIN_JOIN_TOKEN, name: o.name, labels: o.labels === undefined ? undefined : parseLabels(o.labels), compartment: o.compartment,
        advertiseHost: o.advertiseHost, port: o.port, host: o.host, say,
      });
      print({ nodeId: running.nodeId, port: running.port, data: dataDir }, () => `router ${running.nodeId} is up on ${o.host}:${running.port}`);
      stopOnSignals(running, 'router', quiet);
    });
}
