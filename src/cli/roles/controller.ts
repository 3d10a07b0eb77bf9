// `enjin controller`: the cluster's controller on a PostgreSQL server and NATS. Opens the store, connects to the bus
// signed with its own key and trusting only admitted nodes' keys, runs the Controller and its API, and writes
// DATA/credentials.json for the CLI on this host.
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { loadOrCreateIdentity, IDENTITY_ID_FILE } from '../../bus/identity.ts';
import type { KeyRing } from '../../bus/signing.ts';
import { AdmittedKeys, ControllerKeys, type NatsForNodes } from '../../controller/admission.ts';
import { Recovery } from '../../controller/recovery/recovery.ts';
import { TrustWindow } from '../../controller/recovery/trust-window.ts';
import { buildApi } from '../../controller/api/server.ts';
import { TokenAuth } from '../../controller/auth/tokens.ts';
import { Controller } from '../../controller/controller.ts';
import { EnjinError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { componentLogger } from '../../log/logger.ts';
import { openStore } from '../../store/open.ts';
import { connectBus } from './bus-connection.ts';
import { adminToken, writeCredentials } from './credentials.ts';
import { stopInOrder, type RunningRole } from './running.ts';

const log = componentLogger('controller-role');

export interface ControllerRoleOptions {
  dataDir: string;
  databaseUrl: string;
  nats: { url: string; tlsCaFile?: string; credsFile?: string };
  /** what joining nodes are told: the URL they dial (default nats.url) and a credentials file for them */
  natsForNodes?: { url?: string; credsFile?: string };
  apiHost: string;
  apiPort: number;
  /** the API's URL as other hosts reach it (nodes, other controllers naming the leader); default from apiHost */
  advertiseUrl?: string;
  domain: string;
  /** a node silent this long is down */
  nodeDownAfterMs?: number;
  /** rebuild an empty store from what the nodes keep, admitting nodes that prove their key within the window */
  recoverFromNodes?: { windowMs: number; quietMs?: number };
  /** how long events are kept */
  eventRetentionMs?: number;
  /** the master key's file (see store/config-cipher.ts); else ENJIN_MASTER_KEY, else DATA/master.key copied there */
  masterKeyFile?: string;
  say?: (line: string) => void;
}

export interface RunningController extends RunningRole {
  id: string;
  apiUrl: string;
  token: string;
  credentialsFile: string;
}

export async function runController(o: ControllerRoleOptions): Promise<RunningController> {
  const dataDir = resolve(o.dataDir);
  const say = o.say ?? (() => {});
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const natsForNodes = nodesNats(o);
  const identityDir = join(dataDir, 'identity');
  // A controller's key file names it ctl_…; a node's, node_….
  const identity = await loadOrCreateIdentity(identityDir, existsSync(join(identityDir, IDENTITY_ID_FILE)) ? {} : { id: newId('ctl') });
  const started: Array<() => Promise<void>> = [];
  try {
    say('opening the store…');
    const store = await openStore({ dataDir, databaseUrl: o.databaseUrl, masterKeyFile: o.masterKeyFile });
    started.push(() => store.close());
    // Checked before anything can write: a recovery never merges into a store that has rows.
    if (o.recoverFromNodes) Recovery.assertEmpty(await store.load());
    const window = o.recoverFromNodes ? new TrustWindow({ windowMs: o.recoverFromNodes.windowMs }) : null;
    // Before the controller starts: once it follows another controller it writes nothing, and every controller of a
    // shared store needs a working token for the CLI on its host.
    const credentialsFile = join(dataDir, 'credentials.json');
    const token = await adminToken(new TokenAuth(store), credentialsFile, `admin (enjin controller ${identity.id})`);
    // Other controllers on this store trust this one's messages through its recorded key.
    await store.saveControllerKey(identity.id, identity.publicKeyB64, new Date().toISOString());
    const controllers = new ControllerKeys(store);
    await controllers.refresh();
    // Nodes' keys are bound once the controller's working set exists; until then only controllers are trusted.
    let admitted: KeyRing | null = null;
    const keyring: KeyRing = {
      publicKey: (id: string): KeyObject | null => (id === identity.id ? identity.publicKey : admitted?.publicKey(id) ?? controllers.publicKey(id) ?? window?.publicKey(id) ?? null),
      // Only while a recovery's window is open: nodes that lost their admission with the store prove their keys.
      ...(window ? { offered: (id: string, key: string) => window.offered(id, key), confirmed: (id: string, key: string) => window.confirmed(id, key) } : {}),
    };
    say(`connecting to NATS…`);
    const bus = await connectBus({ ...o.nats, name: `enjin-controller ${identity.id}`, identity, keyring });
    started.push(() => bus.close());
    const controller = await Controller.start({
      store, bus, dataDir: join(dataDir, 'controller'), domain: o.domain, natsForNodes, nodeDownAfterMs: o.nodeDownAfterMs, eventRetentionMs: o.eventRetentionMs, controllerId: identity.id,
      // Until the recovery has read what each node keeps, no node is told what to run (it would replace its copy).
      ...(window ? { holdDesired: () => true } : {}),
    });
    admitted = new AdmittedKeys(controller.state);
    started.push(() => controller.stop());
    if (window && o.recoverFromNodes) {
      if (!controller.leadership.leading) throw new EnjinError('not_leader', 'another controller leads this store: run --recover-from-nodes on one controller, before starting the others', { status: 409 });
      const recovery = new Recovery({ controller, window, controllerId: identity.id, quietMs: o.recoverFromNodes.quietMs, say });
      recovery.start();
      started.push(async () => recovery.stop());
    }
    const api = await buildApi(controller);
    try {
      await api.listen({ host: o.apiHost, port: o.apiPort });
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') {
        throw new EnjinError('port_in_use', `the API port ${o.apiPort} is already in use; stop what uses it or pick another with --api-port`, { status: 409 });
      }
      throw err;
    }
    started.push(() => api.close());
    const address = api.server.address();
    const port = typeof address === 'object' && address ? address.port : o.apiPort;
    const host = o.apiHost === '0.0.0.0' || o.apiHost === '::' ? '127.0.0.1' : o.apiHost;
    controller.apiUrl = o.advertiseUrl?.replace(/\/$/, '') ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    writeCredentials(credentialsFile, { api: controller.apiUrl, token });
    controller.ready = true;
    log.info({ controllerId: identity.id, api: controller.apiUrl }, 'controller running');
    return { id: identity.id, apiUrl: controller.apiUrl, token, credentialsFile, stop: () => stopInOrder(started) };
  } catch (err) {
    await stopInOrder(started);
    throw err;
  }
}

function nodesNats(o: ControllerRoleOptions): NatsForNodes {
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new EnjinError('invalid_config', `${flag} ${file} cannot be read (${(err as Error).message})`, { status: 400, cause: err });
    }
  };
  const answer: NatsForNodes = { url: o.natsForNodes?.url ?? o.nats.url };
  if (o.nats.tlsCaFile) answer.tlsCaPem = read(o.nats.tlsCaFile, '--nats-tls-ca');
  if (o.natsForNodes?.credsFile) answer.credsText = read(o.natsForNodes.credsFile, '--nodes-nats-creds');
  return answer;
}
