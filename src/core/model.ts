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
}

/** Seconds: to connect to an instance, for its response headers, and between two chunks of its response body. */
export interface ServiceTimeouts {
  connect: number;
  header: number;
  idle: number;
}

export interface HealthSpec {
  /** HTTP path probed with GET; 2xx/3xx is healthy */
  http?: string;
  /** seconds an instance may take to become ready before its start fails */
  startTimeout: number;
}

export interface Manifest {
  project: string;
  /** commands run once per version, in order, in the unpacked directory, before any instance starts */
  prepare: string[];
  env: Record<string, string>;
  services: Record<string, ServiceSpec>;
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
  createdAt: string;
  updatedAt: string;
}

/** An immutable, content-addressed package plus its manifest. */
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
}

export type InstanceDesiredState = 'running' | 'stopped';

/**
 * Reported by the agent:
 * - preparing: version being fetched/unpacked/prepared on the node
 * - starting: process spawned, readiness gate not yet passed
 * - running: ready (listening, or alive for a moment if it does not listen)
 * - backoff: exited unexpectedly; waiting before the next restart
 * - stopping / stopped: stopped on purpose
 * - failed: gave up (prepare failed, start timed out, unrecoverable)
 */
export type InstanceState = 'pending' | 'preparing' | 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' | 'failed';

export interface InstanceCurrent {
  state: InstanceState;
  /** the node that reports it (normally the one it was placed on) */
  nodeId: string;
  pid: number | null;
  /** the address the router uses to reach it */
  host: string | null;
  port: number | null;
  restarts: number;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  message: string | null;
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

export interface Node {
  id: string;
  name: string;
  /** address routers use to reach instances on this node */
  address: string;
  labels: Record<string, string>;
  /** current */
  status: 'ready' | 'down';
  lastSeenAt: string | null;
  createdAt: string;
  /** current: the disk holding the node's versions and logs, as its agent last reported it (absent from older agents) */
  disk?: NodeDisk | null;
}

/** Free space where a node keeps versions and logs. */
export interface NodeDisk {
  freeBytes: number;
  totalBytes: number;
  /** the node's threshold: below it the node warns and takes no new versions or placements */
  minFreeBytes: number;
  low: boolean;
}

export type JobState = 'waiting' | 'running' | 'succeeded' | 'failed' | 'aborted';

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
