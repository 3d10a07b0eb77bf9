// The API's response shapes: one definition, so the controller that builds them and the client that reads them
// cannot drift apart (a change is a compile error on both sides).
import type { InstanceDesiredState, InstanceState, Job } from './model.ts';

/** A job and everything below it; `log` is present when asked for. */
export interface JobTreeView extends Job {
  log?: string[];
  children: JobTreeView[];
}

/** One page of `GET /v1/jobs`, newest first; `next` is the `before` of the following page, null on the last. */
export interface JobPageView {
  jobs: Job[];
  next: string | null;
}

/** A project as people see it: version numbers, not ids; services with their hostnames and counts. */
export interface ProjectView {
  id: string;
  name: string;
  workspace: string;
  version: number | null;
  routedVersion: number | null;
  createdAt: string;
  updatedAt: string;
  services: Array<{ name: string; command: string; listens: boolean; hostnames: string[]; desired: number; running: number }>;
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

export interface InstanceView {
  id: string;
  project: string;
  service: string;
  version: number | null;
  node: string;
  desired: InstanceDesiredState;
  state: InstanceState;
  pid: number | null;
  host: string | null;
  port: number | null;
  restarts: number;
  lastExit: { code: number | null; signal: string | null; at: string } | null;
  message: string | null;
  createdAt: string;
}
