// The domain model: what users ask for (desired) and what nodes report (current), shared by every component.

/** A service as the manifest describes it, after validation and defaults. */
export interface ServiceSpec {
  name: string;
  /** shell command, run with `sh -c` in the unpacked version's directory */
  command: string;
  /** desired number of instances from the manifest; `enjin scale` overrides it per project */
  instances: number;
  /** whether the service listens on $PORT (gets a port, hostnames, routing and a TCP/HTTP readiness gate) */
  listens: boolean;
  /** hostnames from the manifest; exact names or one-level wildcards such as *.example.com */
  hostnames: string[];
  health: HealthSpec | null;
  /** env for this service only; merged over the project env */
  env: Record<string, string>;
  /** seconds between SIGTERM and SIGKILL when stopping */
  stopTimeout: number;
  /** how long the router waits on the service's instances; absent: the router's defaults (5 / 60 / 300 s) */
  timeouts?: ServiceTimeouts;
  /**
   * volumes the service's processes use, name → the path they are mounted at (project-wide ones merged in, the
   * service's own winning); absent: none. The directory itself is on the node: see core/volumes.ts.
   */
  volumes?: Record<string, string>;
  /** absent: the default for the service (core/service-policies.ts restartOf) */
  restart?: RestartSpec;
  /** absent: the default rollout (core/service-policies.ts updateOf) */
  update?: UpdateSpec;
  /** seconds a stopping instance's in-flight requests may take after it left the routes (default 30) */
  drain?: number;
}

/** Seconds: to connect to an instance, for its response headers, and between two chunks of its response body. */
export interface ServiceTimeouts {
  connect: number;
  header: number;
  idle: number;
}

/**
 * The service's health check (`health:`): one probe that serves as both readiness and liveness. A failed probe takes
 * the instance out of the routes at once (readiness); `retries` failures in a row restart it (liveness). Durations are
 * seconds. Fields after `startTimeout` are absent in versions stored before they existed: read them through
 * `healthOf` (core/service-policies.ts), which fills the defaults.
 */
export interface HealthSpec {
  /** HTTP path probed with GET; 2xx/3xx is healthy */
  http?: string;
  /** with `http`: the body must contain this text */
  expect?: string;
  /** with `http`: the Host header sent (default: the instance's address) */
  host?: string;
  /** connect to $PORT; healthy when it accepts */
  tcp?: boolean;
  /** shell command run in the instance's directory and environment; exit 0 is healthy */
  command?: string;
  /** seconds an instance may take to become ready before its start fails */
  startTimeout: number;
  /** seconds between probes (default 10) */
  interval?: number;
  /** seconds one probe may take (default 2) */
  timeout?: number;
  /** failures in a row that restart the instance (default 3) */
  retries?: number;
  /** seconds after start during which failures do not count (default 0) */
  grace?: number;
}

/** `restart:` per service: what the agent does when an instance's process exits on its own. Durations are seconds. */
export interface RestartSpec {
  /** always: any exit restarts; on-failure: only a non-zero exit or a signal (exit 0 finishes it); never: no restart */
  policy: 'always' | 'on-failure' | 'never';
  /** restarts allowed within `window` before the instance is marked failed (and replaced) */
  maxAttempts: number;
  window: number;
  /** wait before a restart: `initial`, doubling up to `max` */
  backoff: { initial: number; max: number };
}

/** `update:` per service, after Nomad's update stanza: how a new version replaces the running one. Seconds. */
export interface UpdateSpec {
  /** new instances started (and old ones stopped) per batch; 0: all at once */
  parallelism: number;
  /** new instances started first, taking their share of traffic; the rollout pauses until `deploy --promote` */
  canary: number;
  /** each new instance must stay healthy this long before the batch counts as done */
  minHealthyTime: number;
  /** a batch not healthy by then fails the rollout */
  healthyDeadline: number;
  /** a failed rollout puts the previous release back */
  autoRollback: boolean;
  /** instances above the wanted count during the rollout; 0: as many as a batch */
  maxSurge: number;
}

export interface Manifest {
  project: string;
  /** commands run once per version, in order, in the unpacked directory, before any instance starts */
  prepare: string[];
  env: Record<string, string>;
  services: Record<string, ServiceSpec>;
  /** the builder that made `prepare` (absent: none ran; the manifest's own prepare, or nothing to build) */
  build?: BuildRecord;
  /** where the processes came from when not from enjin.yaml: a Procfile, or the builder's default web command */
  processesFrom?: 'Procfile' | 'builder';
  /**
   * Run once per deploy of this version, after its build and before any instance starts, on one node (database
   * migrations): from `release:` in enjin.yaml or a Procfile. A failure fails the deploy and nothing changes.
   */
  release?: string;
  /** the project-wide `volumes:` as written (already merged into each service's `volumes`); absent: none */
  volumes?: Record<string, string>;
}

/** Which builder prepared a version, why, and what its processes need in their environment. */
export interface BuildRecord {
  builder: string;
  /** for people: what was found and what that means, e.g. "package.json found, package-lock.json → npm ci" */
  reason: string;
  /** directories relative to the version put first on PATH for its processes (prepare commands and instances) */
  paths: string[];
  /** variables whose value is a path relative to the version, made absolute by the agent (VIRTUAL_ENV: .venv) */
  pathEnv: Record<string, string>;
}

export interface Workspace {
  id: string;
  name: string;
  createdAt: string;
}

export interface Project {
  id: string;
  workspaceId: string;
  name: string;
  /** desired: the version that should run; null before the first deploy */
  currentVersionId: string | null;
  /**
   * The version routers send traffic to. It trails currentVersionId during a deploy: the route switch is a step of
   * the deploy's job tree, taken once the new instances are ready.
   */
  routedVersionId: string | null;
  /** desired: per-service instance counts set by `enjin scale`, overriding the manifest */
  scale: Record<string, number>;
  /**
   * Config set before the project's first release, which that release takes; once it has a release, the current
   * version's config is the project's and a change makes a new release.
   */
  config?: ConfigVars;
  /**
   * A health-gated rollout under way (a service with `update:` parallelism or canaries): while set, routers carry the
   * instances of both its versions. Kept in memory only: a controller that restarts mid-rollout ends the rollout's
   * tree as interrupted, and the failed deploy puts the previous version back (see controller/rollout/rollout-job.ts).
   */
  rollout?: ProjectRollout | null;
  /** desired: no automatic tasks (replacements, convergence) until thawed; an operator's requests still run */
  frozen?: boolean;
  /** desired: the scale of services `enjin stop` stopped, which `enjin start` brings back */
  stoppedScale?: Record<string, number>;
  createdAt: string;
  updatedAt: string;
}

/** A rollout in progress, from the version running to the one rolling out. */
export interface ProjectRollout {
  fromVersionId: string;
  toVersionId: string;
  /** the rollout job (the tree's root is jobId's root) */
  jobId: string;
  rootJobId: string;
  /**
   * rolling: batches under way; paused: canaries up, waiting for `deploy --promote` or `--abort`; failed: a batch
   * failed its health gate without auto_rollback, waiting for `--promote` (try the batch again) or `--abort`;
   * rolling-back: putting the previous version back
   */
  phase: 'rolling' | 'paused' | 'failed' | 'rolling-back';
  promoted: boolean;
  /** times it has waited for the operator so far (a client that promoted follows until the next one) */
  pauses: number;
  /** for people: why it paused, failed or rolls back */
  reason: string | null;
}

/**
 * A release, as people call it (`enjin releases`): a build (a content-addressed package, its manifest, and what its
 * prepare made of it on each node) plus the config its processes run with. A deploy makes a version with a build of
 * its own; a config change or a rollback makes one that runs an earlier version's build, so nothing is built again.
 */
export interface Version {
  id: string;
  projectId: string;
  /** 1, 2, 3… per project, for people */
  number: number;
  /** sha256 (hex) of the package tarball; the same bytes are the same package */
  sha256: string;
  size: number;
  manifest: Manifest;
  createdAt: string;
  /** the version whose build (unpacked, prepared directory on each node) this one runs; absent: its own */
  buildId?: string;
  /** config vars (secrets included) its processes get; absent: none. Kept encrypted in the store. */
  config?: ConfigVars;
  /** why this release exists, for `enjin releases`; absent for versions made before releases were recorded */
  cause?: ReleaseCause;
}

/** Config vars of a project: `project` for every service, `services[name]` over them for one service. */
export interface ConfigVars {
  project: Record<string, string>;
  services: Record<string, Record<string, string>>;
}

/** What made a release, and who. */
export interface ReleaseCause {
  kind: 'deploy' | 'config' | 'rollback';
  /** for people: "deploy abc1234 Fix login", "set DATABASE_URL, SECRET (web)", "rollback to v3" */
  description: string;
  /** the token's name that asked for it */
  by: string;
  /** a deploy from a git checkout: its commit and subject line */
  git?: { commit: string; message: string };
  /** a rollback: the version it went back to */
  rollbackTo?: number;
}

export type InstanceDesiredState = 'running' | 'stopped';

/**
 * Reported by the agent:
 * - preparing: version being fetched/unpacked/prepared on the node
 * - starting: process spawned, readiness gate not yet passed
 * - running: ready (listening, or alive for a moment if it does not listen)
 * - backoff: exited unexpectedly; waiting before the next restart
 * - stopping / stopped: stopped on purpose
 * - finished: exited on its own and its restart policy says that is the end (exit 0 under on-failure; any exit
 *   under never): counted as done, neither restarted nor replaced
 * - failed: gave up (prepare failed, start timed out, restarts exhausted within the window, unrecoverable)
 */
export type InstanceState = 'pending' | 'preparing' | 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' | 'finished' | 'failed';

/**
 * What the health check says of a running instance: starting (no probe passed yet, or within grace), healthy (the last
 * probe passed), unhealthy (the last probe failed: out of the routes), none (the service has no health check).
 */
export type InstanceHealth = 'healthy' | 'unhealthy' | 'starting' | 'none';

/** The last probe of an instance, as its agent reports it. */
export interface ProbeResult {
  ok: boolean;
  at: string;
  durationMs: number;
  /** for people: "HTTP 503 from /healthz", "connection refused", the command's last output lines */
  output: string;
  /** failed probes in a row (0 after a pass) */
  failures: number;
}

export interface InstanceCurrent {
  state: InstanceState;
  /** the node that reports it (normally the one it was placed on) */
  nodeId: string;
  pid: number | null;
  /** the address the router uses to reach it */
  host: string | null;
  port: number | null;
  restarts: number;
  /** how the last run ended: exit code or signal (both null: it ended unseen, while no agent ran), and when */
  lastExit: { code: number | null; signal: string | null; at: string; oomKilled?: boolean } | null;
  message: string | null;
  /** absent from agents older than health checks: read as 'none' when running */
  health?: InstanceHealth;
  /** the last probe's result; absent or null before the first probe or without a health check */
  probe?: ProbeResult | null;
  /** when the agent last reported it */
  reportedAt: string;
}

export interface Instance {
  id: string;
  workspaceId: string;
  projectId: string;
  service: string;
  versionId: string;
  /** desired: where the scheduler placed it */
  nodeId: string;
  desired: InstanceDesiredState;
  createdAt: string;
  /** current: null until the node reports it */
  current: InstanceCurrent | null;
}

/** What a node does for the cluster: run instances (an agent), carry traffic (a router), or both. */
export type NodeRole = 'agent' | 'router';

export interface Node {
  id: string;
  name: string;
  /** address routers use to reach instances on this node */
  address: string;
  labels: Record<string, string>;
  /** current: 'down' once its keepalives stop (or until it speaks after a controller start) */
  status: 'ready' | 'down';
  /** desired, set by the operator: a draining node gets nothing new and its instances move elsewhere */
  draining: boolean;
  roles: NodeRole[];
  /** where the node sits in the locality tree, e.g. dc1/rack-a; null: not said */
  compartment: string | null;
  /**
   * The Ed25519 public key admitted when the node joined (base64 of its SPKI DER form): every message the node sends
   * is signed with it. null for a node that never joined with a token (the embedded node of `enjin up`).
   */
  publicKey: string | null;
  lastSeenAt: string | null;
  createdAt: string;
  /** current: the disk holding the node's versions and logs, as its agent last reported it (absent from older agents) */
  disk?: NodeDisk | null;
  /** current: what the node offers, as its agent last reported it */
  capacity?: NodeCapacity | null;
  /** current: the volumes the node holds, as its agent last reported them (absent: not reported yet, or an older agent) */
  volumes?: NodeVolume[] | null;
}

/** A volume directory a node holds: a project's data that outlives its versions. */
export interface NodeVolume {
  workspace: string;
  project: string;
  name: string;
  /** the directory on the node */
  dir: string;
  /** bytes of the files in it, as last measured (null: not measured yet) */
  sizeBytes: number | null;
  measuredAt: string | null;
}

/** What a node offers to instances. */
export interface NodeCapacity {
  cpus: number;
  memoryBytes: number;
  /** ports in the agent's --port-range */
  ports: number;
}

/** Free space where a node keeps versions and logs. */
export interface NodeDisk {
  freeBytes: number;
  totalBytes: number;
  /** the node's threshold: below it the node warns and takes no new versions or placements */
  minFreeBytes: number;
  low: boolean;
}

/** 'queued': a root waiting in its project's queue, not planned yet (see controller/change-queue.ts) */
export type JobState = 'queued' | 'waiting' | 'running' | 'succeeded' | 'failed' | 'aborted';

export interface JobTags {
  workspace?: string;
  project?: string;
  service?: string;
  version?: string;
  node?: string;
}

export interface Job {
  id: string;
  /** the root of this job's tree (itself for a root) */
  rootId: string;
  parentId: string | null;
  /** what the job does, for the job engine: 'deploy', 'prepare', 'start', 'switch-routes', 'stop', … */
  kind: string;
  /** for people: "start web.2 on node local" */
  title: string;
  state: JobState;
  tags: JobTags;
  /** the inputs the job's action needs, JSON */
  params: Record<string, unknown>;
  /** why it failed or was aborted */
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** order among siblings, for display */
  position: number;
}

export interface JobLogLine {
  jobId: string;
  at: string;
  line: string;
}

export const TERMINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'aborted']);
