// One coded error type for the whole product: a stable code, an HTTP status, and a message that tells the user what to do.

// Every error code enjin answers with, once, with what it means. A code is a stable contract (clients and scripts
// branch on it); the compiler refuses a code that is not listed here.
export const ERROR_CODES = {
  // requests
  invalid_request: 'a request, option or setting is malformed; the message says which part and how to fix it',
  invalid_id: 'an id in a URL path is not an id enjin could have issued',
  invalid_cursor: 'a paging cursor is malformed or names nothing',
  invalid_config: 'enjin itself is configured wrongly (an option or environment variable)',
  body_too_large: 'a JSON request body is over the limit',
  unsupported_media_type: 'a request body of a type the route does not take',
  unauthorized: 'no token, or a token enjin does not know',
  forbidden: 'the token is known but may not do this',
  not_found: 'the named thing does not exist',
  conflict: 'the store refused a write that contradicts what it holds',
  internal: 'a fault of enjin itself; the message carries the cause',
  bad_response: 'the controller answered with something that is not enjin JSON',
  // manifests and packages
  manifest_missing: 'the package has neither enjin.yaml nor a Procfile',
  manifest_invalid: 'enjin.yaml or the Procfile has errors; details carry line and column',
  manifest_too_large: 'enjin.yaml is over its size limit',
  package_invalid: 'the upload is not a gzip tarball enjin can read',
  package_corrupt: 'a package does not match its checksum',
  package_unsafe: 'a package entry could escape its directory or harm the host (links out, devices, sparse files)',
  package_too_large: 'a package, once unpacked, or its number of entries is over the limit',
  pack_failed: 'the CLI could not pack the directory',
  upload_incomplete: 'the upload ended before its declared length',
  too_many_uploads: 'too many uploads are being received at once; try again shortly',
  unpack_failed: 'a package could not be unpacked on a node',
  unpack_target_exists: 'a version directory is already there on the node',
  // projects, versions, deploys
  project_required: 'the command cannot tell which project is meant',
  project_mismatch: 'the manifest names another project than the one asked for',
  project_busy: 'a job tree is already changing this project',
  project_stopping: 'the project (or the service) is being stopped or destroyed; new tasks for it are refused until that ends',
  not_stopped: 'the services are not stopped: there is no scale `enjin stop` put aside to bring back',
  hostname_taken: 'a hostname belongs to another project, or is generated for one',
  unknown_service: 'the project has no service of that name',
  not_deployed: 'the project has no version yet',
  no_earlier_version: 'there is no version to roll back to',
  job_finished: 'the job tree has already ended',
  no_paused_rollout: 'the project has no rollout waiting for promotion (or for abort)',
  rollout_rolled_back: 'a rollout failed its health gate and put the previous version back',
  // nodes and instances
  no_ready_nodes: 'no node can take the work now',
  node_disk_full: 'a node has less free disk than its threshold',
  node_ready: 'a node that is ready cannot be removed without force; drain it and stop its agent first',
  no_free_port: 'a node has no free port left in its range',
  spawn_failed: 'a process could not be started',
  instance_start_failed: 'an instance exited or never became ready while starting',
  instance_stopped: 'the instance was stopped while the request waited for it',
  instance_not_reported: 'the node did not report the instance running (or gone) in time; it may be away or overloaded',
  prepare_failed: 'a prepare command failed; the message carries its last lines',
  release_failed: "a version's release command failed; the deploy changed nothing, and the message carries its last lines",
  not_prepared: 'a version must be prepared on the node first',
  run_failed: 'a one-off process (`enjin run`) exited with a non-zero code or was killed',
  run_interrupted: 'a one-off process lost its client or its node and was killed',
  version_fetch_failed: 'a node could not download a package',
  version_not_prepared: 'the version is not unpacked and prepared on that node',
  agent_stopping: 'the agent is shutting down',
  agent_state_corrupt: "the agent's state file cannot be read",
  agent_state_unwritable: 'the agent cannot record its instances; it starts nothing until it can',
  app_user_unavailable: 'the unprivileged user apps run as could not be found or created',
  data_dir_unreachable: 'apps cannot reach their files under the data directory',
  // secrets at rest
  master_key_mismatch: "config was sealed under another master key than this controller's; every controller needs the same key",
  sealed_corrupt: 'sealed data (config values, an agent secret) was changed or damaged and cannot be opened',
  // joining the cluster
  join_token_invalid: 'a join token is unknown, expired or already used; make a new one with `enjin nodes token`',
  join_rate_limited: 'too many failed joins from one address; wait before trying again',
  node_key_taken: 'a join named a node id that another key already holds',
  not_joined: 'a node has neither joined (no DATA/node.json) nor been given --join and --token',
  // the platform's own plumbing
  store_unavailable: 'the store cannot be reached; writes are refused until it is back',
  not_leader: 'this controller is a follower: it answers reads; send writes to the leader the message (and the `leader` field) names',
  store_migration_failed: 'the store schema could not be brought up to date',
  data_dir_locked: 'another enjin uses the data directory',
  port_in_use: 'a port enjin was told to listen on is taken',
  no_credentials: 'the CLI found no API address and token',
  controller_unreachable: 'the CLI could not reach the controller',
  bus_timeout: 'a request on the bus got no answer in time',
  bus_no_responder: 'nothing answers on that bus subject',
  bus_closed: 'the bus was closed',
  bus_unavailable: 'the bus (NATS) could not be reached at start; the message names the server and what to check',
  bus_rejected: 'a bus message or answer was refused: unsigned, signed by a key not admitted, badly signed or stale',
  bad_reply: 'a node answered a request with something malformed',
  // config vars and releases
  master_key_missing: 'the store holds sealed config but the controller has no master key to open it',
  config_invalid: 'a config var name or value is not allowed; the message says which and why',
  config_not_found: 'the config var asked for is not set',
  // recovering a lost store from the nodes
  store_not_empty: '--recover-from-nodes rebuilds an empty store only; start it on a new, empty database',
  not_confirmed: 'a destructive command was not confirmed (the name typed did not match); nothing was changed',
  recovering: 'the controller is rebuilding its store from the nodes; writes wait until the first rebuild is written',
  // volumes
  volumes_in_use: "a project's volumes cannot be removed while its instances run on their node",
  volume_node_unavailable: "a service's volume is on a node that is down or draining; its instances wait for that node (moving them would leave the data behind)",
  volumes_split: "a service uses volumes held by different nodes; one instance cannot reach both",
  volumes_unsupported: 'the agent was started without a place for volumes',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetail {
  /** file the problem is in (manifests, packages) */
  file?: string;
  line?: number;
  column?: number;
  /** dotted path of the offending field, e.g. services.web.instances */
  path?: string;
  message: string;
}

export class EnjinError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: ErrorDetail[];

  constructor(code: ErrorCode, message: string, opts: { status?: number; details?: ErrorDetail[]; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EnjinError';
    this.code = code;
    this.status = opts.status ?? 400;
    this.details = opts.details ?? [];
  }

  toJSON(): { code: ErrorCode; message: string; details?: ErrorDetail[] } {
    return this.details.length ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }

  /** Rebuilds an error that crossed a process or HTTP boundary as JSON. */
  static fromJSON(body: unknown, status = 500): EnjinError {
    const b = (body ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    return new EnjinError(
      // A peer of another version may send a code this one does not list: it is passed on as it came.
      typeof b.code === 'string' ? (b.code as ErrorCode) : 'internal',
      typeof b.message === 'string' ? b.message : 'unexpected error',
      { status, details: Array.isArray(b.details) ? (b.details as ErrorDetail[]) : [] },
    );
  }
}

export const notFound = (what: string, hint = ''): EnjinError =>
  new EnjinError('not_found', `${what} not found${hint ? `; ${hint}` : ''}`, { status: 404 });

export const invalid = (message: string, details: ErrorDetail[] = []): EnjinError =>
  new EnjinError('invalid_request', message, { status: 400, details });

export const conflict = (code: ErrorCode, message: string): EnjinError => new EnjinError(code, message, { status: 409 });

const mib = (bytes: number): string => `${Math.floor(bytes / 2 ** 20)} MiB`;

/** A node's disk for versions and logs has less free space than its threshold: it takes no new versions or instances. */
export const nodeDiskFull = (node: string, freeBytes: number, minFreeBytes: number): EnjinError =>
  new EnjinError(
    'node_disk_full',
    `node ${node} has ${mib(freeBytes)} free for versions and logs, less than its minimum of ${mib(minFreeBytes)}; free space there (old logs, unused files) or lower its threshold with \`enjin up --min-free-disk\`, then try again`,
    { status: 507 },
  );

/** Formats an error for a terminal: the message, then one line per detail as file:line:column. */
export function formatError(err: unknown): string {
  if (err instanceof EnjinError) {
    const lines = [`error [${err.code}]: ${err.message}`];
    for (const d of err.details) {
      const where = d.file ? `${d.file}${d.line ? `:${d.line}${d.column ? `:${d.column}` : ''}` : ''}: ` : d.path ? `${d.path}: ` : '';
      lines.push(`  ${where}${d.message}`);
    }
    return lines.join('\n');
  }
  return `error: ${err instanceof Error ? err.message : String(err)}`;
}
