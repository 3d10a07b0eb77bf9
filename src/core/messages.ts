// The messages that cross the ring boundary on the bus: subjects and payload shapes, one place for both sides.
import type { HealthSpec, InstanceCurrent, InstanceDesiredState, NodeCapacity, NodeDisk, NodeRole, NodeVolume, RestartSpec } from './model.ts';
import type { OneOffRunSpec } from './run-messages.ts';

/** Bus subjects (NATS-style: dot-separated tokens; `*` matches one token, `>` the rest). */
export const subjects = {
  /** controller → agent: requests (see AgentRequest), answered with AgentReply */
  agentRpc: (nodeId: string) => `enjin.agent.${nodeId}.rpc`,
  /** agent → controller: NodeStateUpdate */
  nodeState: (nodeId: string) => `enjin.state.node.${nodeId}`,
  nodeStateAll: 'enjin.state.node.*',
  /** controller → one agent or router: "send me a full state (seq 0)" */
  resync: (peerId: string) => `enjin.resync.${peerId}`,
  /** controller → routers: RouteTableUpdate, always a full table */
  routes: 'enjin.routes',
  /** router → controller: request, answered with the current RouteTableUpdate */
  routesRequest: 'enjin.routes.request',
  /** controller → router: requests (see RouterRequest) */
  routerRpc: (routerId: string) => `enjin.router.${routerId}.rpc`,
  /** controller → one agent: DesiredStateUpdate (the instances that node should run) */
  desired: (nodeId: string) => `enjin.desired.${nodeId}`,
  /** agent → controller: DesiredResyncRequest, "send me a full desired state (seq 0)" */
  desiredResync: 'enjin.desired.resync',
  /** anyone → controller: Notification (one-off events, beside state, never inside it) */
  notifications: 'enjin.notify',
  /** agent → any controller (queue group 'controllers'): PackageChunkRequest, answered with PackageChunkReply */
  packageChunk: 'enjin.packages.chunk',
  /**
   * a controller rebuilding an empty store from the nodes (`--recover-from-nodes`) → every agent: RecoveryCensus.
   * Each agent answers by publishing its full node state at once, so the controller learns who is there.
   */
  census: 'enjin.recovery.census',
  /** controller → one agent: PackageChunkRequest for a package that agent kept (recovery), answered with PackageChunkReply */
  nodePackageChunk: (nodeId: string) => `enjin.agent.${nodeId}.packages.chunk`,
  /** agent → controller: RunOutputMessage, the output, exit and keepalives of one one-off run (`enjin run`) */
  runOutput: (nodeId: string, runId: string) => `enjin.agent.${nodeId}.run.${runId}.out`,
  /** controller → agent: RunInputMessage, the stdin, resizes, signals and keepalives of one one-off run */
  runInput: (nodeId: string, runId: string) => `enjin.agent.${nodeId}.run.${runId}.in`,
} as const;

/** What the agent needs to run one instance. Sent in `start`, persisted by the agent so it can restart it on its own. */
export interface InstanceSpec {
  instanceId: string;
  workspace: string;
  project: string;
  service: string;
  /** the version (release) this instance runs: what it reports */
  versionId: string;
  /**
   * the version whose prepared directory it runs in (the build): a config change or rollback runs an earlier
   * version's build; absent: versionId's own
   */
  buildId?: string;
  command: string;
  /** manifest env, service env, the release's config, ENJIN_*: may hold secrets, never written to disk in plain text */
  env: Record<string, string>;
  /** allocate a port and pass it as PORT; gate readiness on it */
  listens: boolean;
  /**
   * HTTP path for the readiness gate; null: TCP connect on PORT. Kept beside `health` so agents (and desired files)
   * older than health checks still read it; a newer agent goes by `health` when present.
   */
  healthPath: string | null;
  /** seconds the instance may take to become ready */
  startTimeout: number;
  /**
   * the service's health check, every field filled (core/service-policies.ts healthOf); null: it has none; absent: a
   * controller older than health checks sent it (the agent gates readiness on healthPath and probes nothing after)
   */
  health?: HealthSpec | null;
  /** the service's restart policy (restartOf); absent from older controllers: the default for the service */
  restart?: RestartSpec;
  /** seconds between SIGTERM and SIGKILL */
  stopTimeout: number;
  /** directories relative to the version put first on PATH (a builder's .venv/bin); absent from older controllers */
  paths?: string[];
  /** variables whose value is a path relative to the version, made absolute by the agent; absent from older controllers */
  pathEnv?: Record<string, string>;
  /** volumes (name → path) whose directories the agent makes and passes as ENJIN_VOLUME_<NAME>; absent: none */
  volumes?: Record<string, string>;
}

/**
 * What the agent needs to prepare a build on its node. A build is named by the version that made it (`versionId`):
 * versions that run an earlier build (config changes, rollbacks) are sent as that build's VersionSpec.
 */
export interface VersionSpec {
  versionId: string;
  project: string;
  sha256: string;
  size: number;
  prepare: string[];
  /** manifest env, available to prepare commands (config vars are not: a config change never needs a rebuild) */
  env: Record<string, string>;
  /** the version's number (v3 → 3), kept by the agent so a controller recovering from the nodes can tell it; absent from older controllers */
  number?: number;
  /** the builder that made `prepare`, written first in the prepare log; with it, the agent writes the builders' scripts into the version */
  build?: { builder: string; reason: string };
  /** as InstanceSpec.paths and pathEnv, for the prepare commands */
  paths?: string[];
  pathEnv?: Record<string, string>;
}

/** One instance a node should run (or stop), with what it needs to prepare its version on its own. */
export interface DesiredInstance {
  spec: InstanceSpec;
  version: VersionSpec;
  desired: InstanceDesiredState;
}

/**
 * State exchange (controller → agent), one stream per node. `incarnation` is random per controller run; seq 0 replaces
 * the node's whole desired state, seq n+1 applies on top of seq n; an empty update every 15 s is a keepalive (it takes
 * a seq, so a lost one is a gap). The agent stops an instance only when told `desired: 'stopped'`: an instance missing
 * from a full update or listed in `removed` keeps running.
 */
export interface DesiredStateUpdate {
  incarnation: string;
  seq: number;
  instances: DesiredInstance[];
  /** instance ids the controller no longer has a row for (seq > 0 only); never a reason to stop anything */
  removed: string[];
}

/** agent → controller on `desiredResync`: at start, on a gap, on a new incarnation, after a bus reconnect */
export interface DesiredResyncRequest {
  nodeId: string;
}

/**
 * The most package bytes one chunk request may ask for: base64 makes 256 KiB about 342 KiB on the wire, well under
 * NATS' default 1 MB max payload once signed and enveloped.
 */
export const PACKAGE_CHUNK_MAX_BYTES = 256 * 1024;

/** Agent → controllers: `length` bytes (at most PACKAGE_CHUNK_MAX_BYTES) of the package `sha256` from `offset`. */
export interface PackageChunkRequest {
  sha256: string;
  offset: number;
  length: number;
}

/** The bytes asked for (fewer only at the end of the package), base64, with the package's total size. */
export interface PackageChunkReply {
  sha256: string;
  offset: number;
  size: number;
  data: string;
}

export type AgentRequest =
  /** fetch + verify sha256 + unpack safely + run prepare commands; idempotent, concurrent calls share one run */
  | { op: 'prepare'; version: VersionSpec }
  /** start (or, if already known, ensure running) an instance; replies once it is ready or failed */
  | { op: 'start'; instance: InstanceSpec }
  /** stop and forget an instance: SIGTERM, SIGKILL after stopTimeout; replies when it is gone */
  | { op: 'stop'; instanceId: string }
  /** read an instance's log from a byte offset (offset -1: the last `maxBytes`) */
  | { op: 'logs'; instanceId: string; offset: number; maxBytes: number }
  /** the log of the last prepare run of a version on this node; with `offset`, only what follows that byte */
  | { op: 'prepare-log'; versionId: string; offset?: number }
  /** kill the running prepare commands of a version (its deploy was aborted); the version stays unprepared */
  | { op: 'cancel-prepare'; versionId: string }
  /** drop unpacked versions not in `keep` and not used by any instance */
  | { op: 'gc'; keep: string[] }
  /** run a prepared build's release command once (a release phase) with the release's `env` (its config); replies with its output */
  | { op: 'release'; version: VersionSpec; command: string; env?: Record<string, string>; volumes?: Record<string, string>; workspace?: string }
  /** the volumes this node holds, their sizes measured now */
  | { op: 'volumes' }
  /** remove a project's volume directories (all of them, or those named) for good: `enjin destroy --volumes` */
  | { op: 'drop-volumes'; workspace: string; project: string; names?: string[] }
  /** what this node holds, for a controller rebuilding its store from the nodes */
  | { op: 'inventory' }
  /** the manifest file (enjin.yaml or Procfile) of a version unpacked here, for a version whose package was not kept */
  | { op: 'version-manifest'; versionId: string }
  /** start a one-off process (`enjin run`) in a prepared build; replies once it runs, then talks on its run subjects */
  | { op: 'run'; run: OneOffRunSpec };

export type AgentReply =
  | { op: 'prepare'; ok: true; log: string }
  | { op: 'start'; ok: true; report: InstanceReport }
  | { op: 'stop'; ok: true }
  | { op: 'logs'; ok: true; data: string; offset: number; size: number }
  | { op: 'prepare-log'; ok: true; log: string; offset: number }
  | { op: 'cancel-prepare'; ok: true; cancelled: boolean }
  | { op: 'gc'; ok: true; removed: string[] }
  | { op: 'release'; ok: true; log: string }
  | { op: 'volumes'; ok: true; volumes: NodeVolume[] }
  | { op: 'drop-volumes'; ok: true; removed: NodeVolume[] }
  | { op: 'inventory'; ok: true; inventory: NodeInventory }
  | { op: 'version-manifest'; ok: true; file: string; text: string }
  | { op: 'run'; ok: true; pid: number };

/** A controller on an empty store asks every agent to show itself (`subjects.census`). */
export interface RecoveryCensus {
  controllerId: string;
}

/** What one node holds: enough for a controller on an empty store to rebuild projects, versions and placements. */
export interface NodeInventory {
  node: NodeInfo & { roles: NodeRole[]; compartment: string | null };
  /** the desired state the agent keeps on disk (its DesiredInstance rows, running and stopped) */
  desired: DesiredInstance[];
  /** versions unpacked and prepared on this node */
  versions: KeptVersion[];
}

/** A version prepared on a node. */
export interface KeptVersion {
  versionId: string;
  /** the project it belongs to, as the agent was told (null from a marker an older agent wrote) */
  project: string | null;
  sha256: string;
  /** the package's size in bytes; null when the package was not kept */
  size: number | null;
  /** the version number, when the agent was told it */
  number: number | null;
  preparedAt: string;
  /** the verified package file is kept: it can be fetched from this node on subjects.nodePackageChunk */
  packageKept: boolean;
}

/** One instance as the agent sees it. */
export interface InstanceReport {
  instanceId: string;
  service: string;
  project: string;
  versionId: string;
  /** what the agent was last told: instances it keeps alive are 'running' */
  desired: InstanceDesiredState;
  current: InstanceCurrent;
}

export interface NodeInfo {
  nodeId: string;
  name: string;
  /** address routers use to reach instances on this node */
  address: string;
  labels: Record<string, string>;
  /** free space for versions and logs; optional, so older agents and controllers still understand each other */
  disk?: NodeDisk;
  /** what the node offers (cpus, memory, ports of its range); optional for the same reason */
  capacity?: NodeCapacity;
  /** the volume directories the node holds (sizes measured now and then, not for every report); optional as above */
  volumes?: NodeVolume[];
}

/**
 * State exchange (agent → controller). Each agent run has a random `incarnation`; `seq` counts updates within it.
 * seq 0 replaces everything the controller knows of this node; seq n+1 applies on top of seq n.
 * A gap or an unknown incarnation makes the controller ask for a full resync. An empty update every 15 s is a heartbeat;
 * it takes the next seq too, so a lost heartbeat is a gap like any other lost update.
 */
export interface NodeStateUpdate {
  node: NodeInfo;
  incarnation: string;
  seq: number;
  /** full replacement when seq is 0 */
  instances: InstanceReport[];
  /** instance ids the node no longer has (seq > 0 only) */
  removed: string[];
}

/** The version an upstream instance runs: routers count and report by it, rollouts weigh one against another. */
export interface UpstreamVersion {
  id: string;
  number: number;
}

export interface Upstream {
  instanceId: string;
  host: string;
  port: number;
  /** absent in tables written before versions were listed (a router must still read those) */
  version?: UpstreamVersion;
  /**
   * Share of the service's requests relative to its other upstreams (weighted round robin): 1 each today, a rollout
   * may weigh versions. 0 takes no new request while another upstream can. Absent in older tables: 1.
   */
  weight?: number;
}

export interface RouteService {
  /** "workspace/project/service": the key stats are counted under */
  key: string;
  /** empty: the service is known but has no running instance, so the router answers 503 */
  upstreams: Upstream[];
  /** how long the router waits on this service's instances (the manifest's `timeouts:`); absent: the defaults */
  timeouts?: RouteTimeouts;
}

/** Milliseconds: to connect to an instance, for its response headers, and between two chunks of its body. */
export interface RouteTimeouts {
  connectMs: number;
  headerMs: number;
  idleMs: number;
}

/** The whole route table, replaced whole. `incarnation` + `seq` order tables from one controller run. */
export interface RouteTableUpdate {
  incarnation: string;
  seq: number;
  /** lower-case hostname or `*.suffix` → service key */
  hosts: Record<string, string>;
  services: Record<string, RouteService>;
  /**
   * A router holding a non-empty table refuses an empty one from a new incarnation (a controller on an empty or
   * restored store) unless this is true: set once the publishing controller run has published a non-empty table, or
   * by an operator's explicit action.
   */
  allowEmpty?: boolean;
}

export type RouterRequest =
  | { op: 'stats' }
  /** requests in flight per upstream instance, and the route table seq applied: used to drain before a stop */
  | { op: 'inflight'; instanceIds: string[] };

export interface RouterInflightReply {
  routerId: string;
  /** of the route table the router applied; '' and -1 before it has any */
  incarnation: string;
  seq: number;
  counts: Record<string, number>;
  /** the incarnation of an empty table the router refused to apply (see RouteTableUpdate.allowEmpty) */
  held?: string;
}

export interface ServiceStats {
  requests: number;
  bytesIn: number;
  bytesOut: number;
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** upstream errors (connection refused, reset) answered with 502 by the router */
  upstreamErrors: number;
  /** latency in milliseconds, time to response headers */
  latency: { count: number; sum: number; p50: number; p90: number; p99: number; max: number };
  websockets: { opened: number; active: number };
}

export interface RouterStatsReply {
  routerId: string;
  since: string;
  services: Record<string, ServiceStats>;
  /** requests for hosts not in the table */
  unknownHost: number;
  /** as RouterInflightReply.held */
  held?: string;
}

export interface Notification {
  kind: 'instance-exited' | 'instance-failed' | 'probe-failed' | 'node-down' | 'rollout-paused' | 'rollout-rolled-back' | 'info';
  at: string;
  nodeId?: string;
  instanceId?: string;
  project?: string;
  service?: string;
  message: string;
}
