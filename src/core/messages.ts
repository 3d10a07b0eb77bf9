// The messages that cross the ring boundary on the bus: subjects and payload shapes, one place for both sides.
import type { InstanceCurrent, InstanceDesiredState, NodeDisk } from './model.ts';

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
  /** anyone → controller: Notification (one-off events, beside state, never inside it) */
  notifications: 'enjin.notify',
} as const;

/** What the agent needs to run one instance. Sent in `start`, persisted by the agent so it can restart it on its own. */
export interface InstanceSpec {
  instanceId: string;
  workspace: string;
  project: string;
  service: string;
  versionId: string;
  command: string;
  env: Record<string, string>;
  /** allocate a port and pass it as PORT; gate readiness on it */
  listens: boolean;
  /** HTTP path for the readiness probe; null: TCP connect on PORT */
  healthPath: string | null;
  /** seconds the instance may take to become ready */
  startTimeout: number;
  /** seconds between SIGTERM and SIGKILL */
  stopTimeout: number;
}

/** What the agent needs to prepare a version on its node. */
export interface VersionSpec {
  versionId: string;
  project: string;
  sha256: string;
  size: number;
  /** where to GET the tarball (controller API), with `Authorization: Bearer ${token}` */
  url: string;
  token: string;
  prepare: string[];
  /** project env, available to prepare commands */
  env: Record<string, string>;
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
  | { op: 'gc'; keep: string[] };

export type AgentReply =
  | { op: 'prepare'; ok: true; log: string }
  | { op: 'start'; ok: true; report: InstanceReport }
  | { op: 'stop'; ok: true }
  | { op: 'logs'; ok: true; data: string; offset: number; size: number }
  | { op: 'prepare-log'; ok: true; log: string; offset: number }
  | { op: 'cancel-prepare'; ok: true; cancelled: boolean }
  | { op: 'gc'; ok: true; removed: string[] };

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

export interface Upstream {
  instanceId: string;
  host: string;
  port: number;
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
}

export interface Notification {
  kind: 'instance-exited' | 'instance-failed' | 'probe-failed' | 'node-down' | 'info';
  at: string;
  nodeId?: string;
  instanceId?: string;
  project?: string;
  service?: string;
  message: string;
}
