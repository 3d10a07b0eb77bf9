// `enjin agent`: run a cluster node that runs instances (and, with --router-port, a router) until stopped.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { parseSize, toPort } from '../arguments.ts';
import { globals, print } from '../program.ts';

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run a node that runs instances: joins the cluster once with a token (kept in --data), then runs from there')
    .option('--join <url>', "the controller's API, e.g. http://10.0.0.1:7000 (first start only)")
    .option('--token <token>', 'a join token from `enjin nodes token` (first start only)')
    .option('--name <name>', "the node's name (default: as it last ran, else the host name)")
    .option('--labels <k=v,…>', 'labels, e.g. zone=a,disk=ssd (default: as the node last ran)')
    .option('--compartment <path>', 'where the node sits, e.g. dc1/rack-a')
    .addOption(new Option('--port-range <from-to>', 'ports given to instances').default('20000-29999'))
    .option('--advertise-host <ip>', "the address routers reach this node's instances at (default: this host's address towards the controller)")
    .addOption(new Option('--router-port <port>', 'run a router on this port too').argParser(toPort))
    .option('--router-host <host>', 'address the router listens on', '0.0.0.0')
    .option('--instance-memory <size>', 'memory limit of each instance, e.g. 512M or 2G, or off (default: 1G, or half the host\'s memory if less)')
    .addOption(new Option('--min-free-disk <size>', 'below this much free disk the node takes nothing new (e.g. 512M, 2G)').default('1G'))
    .option('--stop-instances-on-exit', 'stop the instances when the agent stops (default: they keep running and the next start re-adopts them)')
    .action(async (o) => {
      const { raiseNofileLimit } = await import('../../process/fd-limit.ts');
      const quiet = !!globals().json;
      const say = (line: string) => quiet || process.stderr.write(`${line}\n`);
      say(raiseNofileLimit().message);
      const { parseMemorySize } = await import('../up.ts');
      const { parseLabels, parsePortRange, stopOnSignals } = await import('../roles/options.ts');
      const { runAgent } = await import('../roles/agent.ts');
      const dataDir = resolve(globals().data ?? process.env.ENJIN_DATA ?? '.enjin');
      const running = await runAgent({
        dataDir, join: o.join, token: o.token ?? process.env.ENJIN_JOIN_TOKEN, name: o.name, labels: o.labels === undefined ? undefined : parseLabels(o.labels), compartment: o.compartment,
        portRange: parsePortRange(o.portRange), advertiseHost: o.advertiseHost, routerPort: o.routerPort, routerHost: o.routerHost,
        instanceMemoryBytes: o.instanceMemory === undefined ? undefined : parseMemorySize(String(o.instanceMemory)),
        minFreeDiskBytes: parseSize('--min-free-disk', o.minFreeDisk), stopInstancesOnExit: !!o.stopInstancesOnExit, say,
      });
      print({ nodeId: running.nodeId, address: running.address, routerPort: running.routerPort, data: dataDir }, () => [
        `agent ${running.nodeId} is up (instances reachable at ${running.address})`,
        ...(running.routerPort !== null ? [`  router       http://${o.routerHost === '0.0.0.0' ? running.address : o.routerHost}:${running.routerPort}`] : []),
        `  data         ${dataDir}  (restart with the same --data: no token needed)`,
      ].join('\n'));
      stopOnSignals(running, 'agent', quiet);
    });
}
