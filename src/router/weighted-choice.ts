// Smooth weighted round robin over a service's upstreams (the nginx algorithm): deterministic, and fair at every
// prefix of the sequence: weights 2:1 give a, b, a, a, b, a, … never a burst of one upstream.
import type { Upstream, UpstreamVersion } from '../core/messages.ts';

/** An upstream as the router holds it: the weight always present (tables from before weights existed: 1). */
export interface RoutedUpstream {
  readonly instanceId: string;
  readonly host: string;
  readonly port: number;
  readonly version?: Readonly<UpstreamVersion>;
  readonly weight: number;
}

export function routedUpstream(u: Upstream): RoutedUpstream {
  const base = { instanceId: u.instanceId, host: u.host, port: u.port, weight: u.weight ?? 1 };
  return Object.freeze(u.version ? { ...base, version: Object.freeze({ id: u.version.id, number: u.version.number }) } : base);
}

export class WeightedChoice {
  /** each upstream's running score; the highest is chosen and pays the total weight back */
  private readonly scores: Float64Array;

  constructor(private readonly upstreams: readonly RoutedUpstream[]) {
    this.scores = new Float64Array(upstreams.length);
  }

  /**
   * The next upstream among those `eligible` accepts, or null if it accepts none. Only eligible upstreams take part in
   * this round, so one skipped for a while (it refused a connection) neither loses nor hoards its share. If every
   * eligible upstream weighs 0, they are taken as equals: a request is never refused for want of weight.
   */
  next(eligible: (u: RoutedUpstream) => boolean): RoutedUpstream | null {
    const list = this.upstreams;
    let total = 0;
    let any = false;
    for (const u of list) {
      if (!eligible(u)) continue;
      any = true;
      total += u.weight;
    }
    if (!any) return null;
    const equal = total === 0;
    let best = -1;
    let sum = 0;
    for (let i = 0; i < list.length; i++) {
      const u = list[i];
      if (!eligible(u)) continue;
      const w = equal ? 1 : u.weight;
      if (w === 0) continue;
      sum += w;
      this.scores[i] += w;
      if (best === -1 || this.scores[i] > this.scores[best]) best = i;
    }
    this.scores[best] -= sum;
    return list[best];
  }
}
