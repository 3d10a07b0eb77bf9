// The rollout planner: given what each service's instances of the old (from) and new (to) version are doing, says the
// next step of a health-gated rollout (Nomad's update stanza): start canaries, pause, start a batch, stop the old
// instances a settled batch replaces, wait, fail, or roll back. Pure: no I/O and no clock (`now` is an input).
import type { InstanceHealth, InstanceState, UpdateSpec } from '../../core/model.ts';

/** Which version an instance runs: the one being replaced (from) or the one rolling out (to). */
export type Side = 'from' | 'to';

export interface RolloutInstance {
  id: string;
  side: Side;
  /** as its node reports it; null: not reported yet */
  state: InstanceState | null;
  /** 'none' for a service without a health check (and for agents that do not report health) */
  health: InstanceHealth;
  /** ms: since when it has been seen up (running, healthy or without a check) without a break; null: it is not up */
  upSince: number | null;
  /** ms */
  createdAt: number;
}

export interface ServiceRollout {
  service: string;
  /** the new version's update stanza for this service (the old one's when the service is gone from the new version) */
  update: UpdateSpec;
  /** instances of the new version wanted now (read at every step: a scale may change it); 0: the service is gone */
  wanted: number;
  /** instances of the old version wanted, for a rollback; 0: the old version had no such service */
  wantedFrom: number;
  /** the service's instances meant to run (desired 'running'), of both versions */
  instances: RolloutInstance[];
  /** ms: when the batch still settling was started (its healthy_deadline counts from there); null: none started */
  batchStartedAt: number | null;
}

export interface RolloutInput {
  /** ms */
  now: number;
  /** forward: roll the new version out; rollback: bring the old one back and remove the new (a failure, an abort) */
  mode: 'forward' | 'rollback';
  /** the operator promoted the canaries */
  promoted: boolean;
  services: ServiceRollout[];
}

export type RolloutAction =
  | { kind: 'start'; service: string; side: Side; count: number; reason: string }
  | { kind: 'stop'; service: string; instanceIds: string[]; reason: string };

export interface RolloutFailure {
  service: string;
  /** the instance whose health or failure decided it (its probe and log tell why); null: none in particular */
  instanceId: string | null;
  reason: string;
}

export interface RolloutStep {
  /**
   * act: do `actions` (in parallel), then plan again; wait: nothing to do until a report changes something or the
   * clock reaches `wakeAt`; paused: every service left is waiting for the operator (canaries up); failed: the rollout
   * failed (`failure` says why), roll back; done: nothing of the old version is left and every wanted instance runs.
   */
  kind: 'act' | 'wait' | 'paused' | 'failed' | 'done';
  actions: RolloutAction[];
  /** ms: the earliest time the clock alone can change the verdict; null: only a report (or the operator) can */
  wakeAt: number | null;
  failure: RolloutFailure | null;
  /** per service, for the job's log: where it stands */
  notes: Record<string, string>;
}

type Verdict =
  | { kind: 'act'; actions: RolloutAction[]; note: string }
  | { kind: 'wait'; wakeAt: number | null; note: string }
  | { kind: 'paused'; note: string }
  | { kind: 'failed'; failure: RolloutFailure; note: string }
  | { kind: 'done'; note: string };

/** Running and passing its health check (or without one): it may take traffic. */
export function isUp(i: Pick<RolloutInstance, 'state' | 'health'>): boolean {
  return i.state === 'running' && (i.health === 'healthy' || i.health === 'none');
}

export function nextStep(input: RolloutInput): RolloutStep {
  const verdicts = input.services.map((s) => [s.service, input.mode === 'forward' ? forward(s, input) : rollback(s, input)] as const);
  const notes = Object.fromEntries(verdicts.map(([name, v]) => [name, v.note]));
  const failed = verdicts.find(([, v]) => v.kind === 'failed');
  // One service failing fails the whole deploy: its other services roll back with it, as one release.
  if (failed) return { kind: 'failed', actions: [], wakeAt: null, failure: (failed[1] as Extract<Verdict, { kind: 'failed' }>).failure, notes };
  const actions = verdicts.flatMap(([, v]) => (v.kind === 'act' ? v.actions : []));
  const wakes = verdicts.flatMap(([, v]) => (v.kind === 'wait' && v.wakeAt !== null ? [v.wakeAt] : []));
  const wakeAt = wakes.length ? Math.min(...wakes) : null;
  if (actions.length) return { kind: 'act', actions, wakeAt, failure: null, notes };
  if (verdicts.some(([, v]) => v.kind === 'wait')) return { kind: 'wait', actions: [], wakeAt, failure: null, notes };
  if (verdicts.some(([, v]) => v.kind === 'paused')) return { kind: 'paused', actions: [], wakeAt: null, failure: null, notes };
  return { kind: 'done', actions: [], wakeAt: null, failure: null, notes };
}

function forward(s: ServiceRollout, input: RolloutInput): Verdict {
  const { update, wanted } = s;
  const now = input.now;
  const from = s.instances.filter((i) => i.side === 'from');
  const to = s.instances.filter((i) => i.side === 'to');
  const where = `${to.length} new of ${wanted} wanted, ${from.length} old`;

  const broken = to.find((i) => i.state === 'failed');
  if (broken) return { kind: 'failed', failure: { service: s.service, instanceId: broken.id, reason: `${s.service} ${broken.id} of the new version failed on its node` }, note: where };

  const minHealthyMs = update.minHealthyTime * 1000;
  const settled = (i: RolloutInstance) => isUp(i) && i.upSince !== null && now - i.upSince >= minHealthyMs;
  const settling = to.filter((i) => !settled(i));
  if (settling.length) {
    const startedAt = s.batchStartedAt ?? Math.min(...settling.map((i) => i.createdAt));
    const deadline = startedAt + update.healthyDeadline * 1000;
    if (now >= deadline) {
      // The one to blame is one that is not up at all, if any: its probe says why; else one not up long enough.
      const culprit = settling.find((i) => !isUp(i)) ?? settling[0];
      const what = isUp(culprit) ? `did not stay healthy for ${update.minHealthyTime} s` : `was not healthy (${describe(culprit)})`;
      return { kind: 'failed', failure: { service: s.service, instanceId: culprit.id, reason: `${s.service} ${culprit.id} ${what} within the healthy deadline of ${update.healthyDeadline} s` }, note: where };
    }
    // Up but not for long enough yet: the clock alone settles those; the others wait for their node's report.
    const settleTimes = settling.filter((i) => isUp(i) && i.upSince !== null).map((i) => i.upSince! + minHealthyMs);
    return { kind: 'wait', wakeAt: Math.min(deadline, ...settleTimes), note: `${where}; waiting for ${settling.length} new to be healthy${minHealthyMs ? ` for ${update.minHealthyTime} s` : ''}` };
  }

  // Canaries only make sense beside something to compare them with, and only while the service is wanted at all.
  const canaries = update.canary > 0 && !input.promoted && from.length > 0 && wanted > 0;
  if (canaries) {
    if (to.length < update.canary) {
      return { kind: 'act', actions: [{ kind: 'start', service: s.service, side: 'to', count: update.canary - to.length, reason: `canary ${to.length + 1}${update.canary - to.length > 1 ? `-${update.canary}` : ''} of ${update.canary}` }], note: where };
    }
    return { kind: 'paused', note: `${where}; ${to.length} canar${to.length === 1 ? 'y' : 'ies'} healthy, waiting for promotion` };
  }

  // A settled batch replaces as many old instances: stop them (oldest first, those not serving before them).
  const excess = from.length + to.length - wanted;
  if (excess > 0 && from.length) {
    const ranked = [...from].sort((a, b) => Number(isUp(a)) - Number(isUp(b)) || a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
    const stops = ranked.slice(0, Math.min(excess, from.length)).map((i) => i.id);
    return { kind: 'act', actions: [{ kind: 'stop', service: s.service, instanceIds: stops, reason: 'replaced by the new version' }], note: where };
  }
  if (to.length > wanted) {
    // Scaled down during the rollout: newest first, as the reconciler does.
    const ranked = [...to].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
    return { kind: 'act', actions: [{ kind: 'stop', service: s.service, instanceIds: ranked.slice(0, to.length - wanted).map((i) => i.id), reason: `scaled to ${wanted}` }], note: where };
  }
  if (to.length < wanted) {
    const batch = update.parallelism > 0 ? update.parallelism : wanted;
    const surge = update.maxSurge > 0 ? update.maxSurge : batch;
    const room = wanted + surge - (from.length + to.length);
    const count = Math.min(batch, wanted - to.length, room);
    // room is at least `surge` (≥ 1) here, since nothing above wanted is left alive.
    return { kind: 'act', actions: [{ kind: 'start', service: s.service, side: 'to', count, reason: `batch of ${count} (${to.length + count} of ${wanted})` }], note: where };
  }
  return { kind: 'done', note: `${wanted} of ${wanted} on the new version` };
}

function rollback(s: ServiceRollout, input: RolloutInput): Verdict {
  const from = s.instances.filter((i) => i.side === 'from');
  const to = s.instances.filter((i) => i.side === 'to');
  const where = `${from.length} old of ${s.wantedFrom} wanted, ${to.length} new left`;
  if (from.length < s.wantedFrom) {
    return { kind: 'act', actions: [{ kind: 'start', service: s.service, side: 'from', count: s.wantedFrom - from.length, reason: 'bringing the previous version back' }], note: where };
  }
  if (from.length > s.wantedFrom) {
    const ranked = [...from].sort((a, b) => Number(isUp(a)) - Number(isUp(b)) || b.createdAt - a.createdAt);
    return { kind: 'act', actions: [{ kind: 'stop', service: s.service, instanceIds: ranked.slice(0, from.length - s.wantedFrom).map((i) => i.id), reason: `scaled to ${s.wantedFrom}` }], note: where };
  }
  // The new version's instances stay (those up still serve) until the old ones are back and up; past the deadline
  // they go anyway: a rollback always ends, whatever the old version's health.
  const down = from.filter((i) => !isUp(i));
  if (down.length && to.length) {
    const startedAt = s.batchStartedAt ?? input.now;
    const deadline = startedAt + s.update.healthyDeadline * 1000;
    if (input.now < deadline) return { kind: 'wait', wakeAt: deadline, note: `${where}; waiting for ${down.length} old to be healthy` };
  }
  if (to.length) {
    return { kind: 'act', actions: [{ kind: 'stop', service: s.service, instanceIds: to.map((i) => i.id), reason: 'rolled back' }], note: where };
  }
  return { kind: 'done', note: `${from.length} of ${s.wantedFrom} on the previous version` };
}

function describe(i: RolloutInstance): string {
  if (!i.state) return 'not reported yet';
  if (i.state !== 'running') return i.state;
  return i.health;
}
