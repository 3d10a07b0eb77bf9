// `enjin controller`: run a cluster controller on a PostgreSQL server and NATS until stopped.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { EnjinError } from '../../core/errors.ts';
import { toPort } from '../arguments.ts';
import { globals, print } from '../program.ts';
import { parseDuration } from '../roles/durations.ts';

export function registerController(program: Command): void {
  program
    .command('controller')
    .description('run a cluster controller on a PostgreSQL server and NATS (several may share them: one leads)')
    .option('--database-url <url>', 'the PostgreSQL server: postgres://USER:PASSWORD@HOST:5432/DB (or ENJIN_DATABASE_URL)')
    .option('--nats <url>', 'the NATS server(s): nats://[USER:PASSWORD@]HOST:4222, tls://… for TLS, comma-separated for several (or ENJIN_NATS_URL)')
    .option('--nats-tls-ca <file>', "CA bundle to verify the NATS server's certificate (handed to joining nodes too)")
    .option('--nats-creds <file>', 'NATS credentials file (JWT + nkey seed) for this controller')
    .option('--nodes-nats <url>', 'the NATS URL joining nodes are told (default: --nats)')
    .option('--nodes-nats-creds <file>', 'a NATS credentials file handed to joining nodes')
    .option('--api-host <host>', 'address the API listens on', '127.0.0.1')
    .addOption(new Option('--api-port <port>', 'API port').default(7000).argParser(toPort))
    .option('--advertise-url <url>', "the API's URL as other hosts reach it, e.g. http://10.0.0.1:7000 (default: from --api-host; set it when that is 0.0.0.0)")
    .option('--domain <domain>', 'domain of generated hostnames SERVICE.PROJECT.DOMAIN', 'localhost')
    .option('--node-down-after <duration>', 'a node silent this long is down and its instances are replaced', '30s')
    .option('--recover-from-nodes', 'the store was lost: rebuild nodes, projects, versions and placements on this empty database from what the nodes keep')
    .option('--recover-window <duration>', 'with --recover-from-nodes: how long nodes that prove their key are admitted without a token', '10m')
    .option('--event-retention <duration>', 'how long `enjin events` keeps what happened', '7d')
    .option('--master-key-file <file>', 'the key config vars are sealed under, shared by every controller of the cluster (or ENJIN_MASTER_KEY; make one with `openssl rand -base64 32`)')
    .option('--recover-quiet <duration>', 'with --recover-from-nodes: the first rebuild waits until no new node has shown up for this long', '10s')
    .action(async (o) => {
      const databaseUrl = o.databaseUrl ?? process.env.ENJIN_DATABASE_URL;
      const nats = o.nats ?? process.env.ENJIN_NATS_URL;
      if (!databaseUrl) throw new EnjinError('invalid_request', 'pass --database-url postgres://… (the store every controller of the cluster shares)');
      if (!nats) throw new EnjinError('invalid_request', 'pass --nats nats://HOST:4222 (the bus between controllers, agents and routers)');
      const nodeDownAfterMs = parseDuration('--node-down-after', o.nodeDownAfter);
      const recoverFromNodes = o.recoverFromNodes ? { windowMs: parseDuration('--recover-window', o.recoverWindow), quietMs: parseDuration('--recover-quiet', o.recoverQuiet) } : undefined;
      if (o.advertiseUrl !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(o.advertiseUrl)) throw new EnjinError('invalid_request', `--advertise-url must look like http://10.0.0.1:7000 (got ${o.advertiseUrl})`);
      const dataDir = resolve(globals().data ?? process.env.ENJIN_DATA ?? '.enjin');
      const quiet = !!globals().json;
      const say = (line: string) => quiet || process.stderr.write(`${line}\n`);
      say(`starting the controller in ${dataDir}…`);
      const { runController } = await import('../roles/controller.ts');
      const running = await runController({
        dataDir, databaseUrl, nats: { url: nats, tlsCaFile: o.natsTlsCa, credsFile: o.natsCreds },
        natsForNodes: { url: o.nodesNats, credsFile: o.nodesNatsCreds },
        apiHost: o.apiHost, apiPort: o.apiPort, advertiseUrl: o.advertiseUrl, domain: o.domain, nodeDownAfterMs, recoverFromNodes, masterKeyFile: o.masterKeyFile, eventRetentionMs: parseDuration('--event-retention', o.eventRetention), say,
      });
      print({ id: running.id, api: running.apiUrl, data: dataDir, credentials: running.credentialsFile }, () => [
        `controller ${running.id} is up`,
        `  API          ${running.apiUrl}  (token in ${running.credentialsFile})`,
        `  data         ${dataDir}`,
        `let a host join: enjin nodes token --data ${dataDir}, then on the host: enjin agent --join API_URL --token TOKEN --data DIR`,
      ].join('\n'));
      const { stopOnSignals } = await import('../roles/options.ts');
      stopOnSignals(running, 'controller', quiet);
    });
}
