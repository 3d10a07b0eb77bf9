// The API's response shapes: one definition, so the controller that builds them and the client that reads them
// cannot drift apart (a change is a compile error on both sides).
import type { InstanceDesiredState, InstanceHealth, InstanceState, Job, NodeCapacity, NodeDisk, NodeRole, ProbeResult } from './model.ts';

/** A job and everything below it; `log` is present when asked for. */
export interface JobTreeView extends Job {
  log?: string[];
  children: JobTreeView[];
}

/** One page of `GET /v1/jobs`, newest first; `next` is the `before` of the following page, null on the last. */
export interface JobPageView {
  jobs: QueuedJobView[];
  next: string | null;
}

/** Where a queued root stands in its project's queue: 1 is next; `behind` is the tree it waits for. */
export interface QueuePlace {
  position: number;
  behind: string | null;
}

/** A job as answers list it: a queued root says where it stands. */
export type QueuedJobView = Job & { queue?: QueuePlace };

/** A project as people see it: version numbers, not ids; services with their hostnames and counts. */
export interface ProjectView {
  id: string;
  name: string;
  workspace: string;
  version: number | null;
  routedVersion: number | null;
  createdAt: string;
  updatedAt: string;
  /** urls: where a browser reaches each hostname through the router (the router's port included when not 80/443) */
  services: Array<{ name: string; command: string; listens: boolean; hostnames: string[]; urls?: string[]; desired: number; running: number; stopped?: boolean }>;
  /** no automatic tasks (replacements, convergence) until `enjin thaw` */
  frozen: boolean;
}

export interface VersionView {
  id: string;
  number: number;
  sha256: string;
  size: number;
  createdAt: string;
  current: boolean;
  routed: boolean;
  services: Record<string, { command: string; instances: number; listens: boolean; hostnames: string[] }>;
}

/** A version as a release: what made it, who, and which build it runs. Config values are never part of it. */
export interface ReleaseView extends VersionView {
  /** the number of the version whose build it runs (its own for a deploy) */
  build: number | null;
  kind: 'deploy' | 'config' | 'rollback';
  description: string;
  by: string | null;
  git: { commit: string; message: string } | null;
  /** names of its config vars, project-wide and per service */
  configKeys: { project: string[]; services: Record<string, string[]> };
}

export interface InstanceView {
  id: string;
  project: string;
  service: string;
  version: number | null;
  /** the id of the node it is placed on */
  node: string;
  /** that node's name, for people */
  nodeName: string;
  desired: InstanceDesiredState;
  state: InstanceState;
  pid: number | null;
  host: string | null;
  port: number | null;
  restarts: number;
  /** how the last run ended: exit code or signal (both null: it ended unseen, while no agent ran), and when */
  lastExit: { code: number | null; signal: string | null; at: string; oomKilled?: boolean } | null;
  message: string | null;
  /** what its health check says; 'none' without a check, and for an instance with no process (not running) */
  health: InstanceHealth;
  /** the last probe's result (the readiness gate's or the health check's); null before any, or without a check */
  probe: ProbeResult | null;
  createdAt: string;
}

/** A node as `GET /v1/nodes` lists it. */
export interface NodeView {
  id: string;
  name: string;
  /** down wins over draining: a node that does not report can do nothing either way */
  state: 'ready' | 'down' | 'draining';
  address: string;
  labels: Record<string, string>;
  compartment: string | null;
  roles: NodeRole[];
  capacity: NodeCapacity | null;
  disk: NodeDisk | null;
  /** instances placed there and meant to run */
  instances: number;
  /** instances it runs that the controller does not manage (unknown project or version), left running */
  unmanaged: number;
  lastSeenAt: string | null;
  createdAt: string;
}

/** An instance a node runs that the controller does not manage, as `GET /v1/nodes/NODE` lists it. */
export interface UnmanagedInstanceView {
  id: string;
  project: string;
  service: string;
  versionId: string;
  state: InstanceState;
  pid: number | null;
  host: string | null;
  port: number | null;
  reportedAt: string;
}

/** A rebuild of the store from the nodes (`enjin controller --recover-from-nodes`), as `GET /v1/cluster` shows it. */
export interface RecoveryView {
  /** census: collecting nodes before the first rebuild (writes wait); rebuilt: merging late nodes; closed: window over */
  phase: 'census' | 'rebuilt' | 'closed';
  windowClosesAt: string;
  nodes: number;
  projects: number;
  versions: number;
  instances: number;
  /** versions rebuilt without their package (no node kept it): redeploy them before placing them on another node */
  versionsWithoutPackage: string[];
  problems: string[];
}

/** One volume as `GET /v1/volumes` lists it (`enjin volumes`). */
export interface VolumeView {
  workspace: string;
  project: string;
  name: string;
  /** services of the project's current version that use it (empty: the project is gone or no longer uses it) */
  services: string[];
  /** the path the manifest gives it (what processes would see in a mount namespace of their own); null: not in the manifest */
  path: string | null;
  /** the variable that holds its directory */
  env: string;
  node: { id: string; name: string; state: 'ready' | 'down' | 'draining' };
  /** the directory on the node */
  dir: string;
  sizeBytes: number | null;
  measuredAt: string | null;
}

/** A project's rollout under way (`GET /v1/projects/NAME/rollout`): versions by number. */
export interface RolloutView {
  from: number | null;
  to: number | null;
  /** rolling, paused (canaries up, waiting for promotion), failed (a batch failed without auto_rollback), rolling-back */
  phase: 'rolling' | 'paused' | 'failed' | 'rolling-back';
  promoted: boolean;
  /** times it has waited for the operator so far: its job's log says `paused: …` (or `waiting: …`) at each */
  pauses: number;
  reason: string | null;
  /** the root of the rollout's job tree: follow it with `enjin jobs show ID -f` */
  job: string;
}

/** How a rollout job's log line begins when it starts waiting for the operator: a client following it stops there. */
export const ROLLOUT_PAUSED = 'rollout paused:';
export const ROLLOUT_WAITING = 'rollout waiting:';
