// The in-process bus for embedded mode: same semantics as NATS (subject wildcards, queue groups, copied payloads,
// request timeouts).
import { EnjinError } from '../core/errors.ts';
import type { Bus, BusMessage, BusStatus, RequestMeta, SubscribeOptions, Subscription } from './bus.ts';

interface Entry {
  pattern: string[];
  handler: (msg: BusMessage) => void;
  queue: string | undefined;
}

interface ResponderEntry {
  responder: (data: unknown, meta: RequestMeta) => Promise<unknown>;
  queue: string | undefined;
}

/** True if a NATS-style pattern (with `*` and `>`) matches a concrete subject. */
export function subjectMatches(pattern: string[], subject: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i];
    if (p === '>') return subject.length > i;
    if (i >= subject.length) return false;
    if (p !== '*' && p !== subject[i]) return false;
  }
  return pattern.length === subject.length;
}

export class MemoryBus implements Bus {
  private entries = new Set<Entry>();
  private responders = new Map<string, ResponderEntry[]>();
  /** round-robin position per queue group and per handled subject: members share the work evenly */
  private turns = new Map<string, number>();
  private closed = false;

  publish(subject: string, data: unknown): void {
    if (this.closed) return;
    const tokens = subject.split('.');
    // Serialize once: the wire copy keeps publishers and subscribers from sharing objects, as NATS would.
    const wire = JSON.stringify(data ?? null);
    const targets: Entry[] = [];
    // NATS groups queue subscribers by queue name across every matching subscription: one member per group gets it.
    const groups = new Map<string, Entry[]>();
    for (const entry of this.entries) {
      if (!subjectMatches(entry.pattern, tokens)) continue;
      if (entry.queue === undefined) targets.push(entry);
      else groups.set(entry.queue, [...(groups.get(entry.queue) ?? []), entry]);
    }
    for (const [queue, members] of groups) targets.push(members[this.turn(`q:${queue}`, members.length)]);
    for (const entry of targets) {
      const msg: BusMessage = { subject, data: JSON.parse(wire), sender: null };
      // Deliver asynchronously, like a network would: a publisher never runs subscriber code on its own stack.
      queueMicrotask(() => {
        if (!this.entries.has(entry)) return;
        try {
          entry.handler(msg);
        } catch (err) {
          process.emitWarning(`bus subscriber for ${subject} threw: ${(err as Error).message}`);
        }
      });
    }
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: SubscribeOptions = {}): Subscription {
    const entry: Entry = { pattern: subject.split('.'), handler, queue: opts.queue };
    this.entries.add(entry);
    return { unsubscribe: () => void this.entries.delete(entry) };
  }

  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts: SubscribeOptions = {}): Subscription {
    if (subject.includes('*') || subject.includes('>')) throw new Error('MemoryBus.handle takes a concrete subject');
    const entry: ResponderEntry = { responder, queue: opts.queue };
    const current = this.responders.get(subject) ?? [];
    // Members of a queue group take turns. A responder outside any group replaces the previous one (a restarted
    // component takes its subject over), as this bus always did; NATS would let both answer and keep the first reply.
    this.responders.set(subject, [...(entry.queue === undefined ? current.filter((e) => e.queue !== undefined) : current), entry]);
    return {
      unsubscribe: () => {
        const left = (this.responders.get(subject) ?? []).filter((e) => e !== entry);
        if (left.length) this.responders.set(subject, left);
        else this.responders.delete(subject);
      },
    };
  }

  async request<T = unknown>(subject: string, data: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) throw new EnjinError('bus_closed', 'the bus is closed', { status: 503 });
    const all = this.responders.get(subject) ?? [];
    const solo = all.filter((e) => e.queue === undefined);
    const candidates = solo.length ? solo : all;
    if (!candidates.length) throw new EnjinError('bus_no_responder', `nothing answers on ${subject}; is that component running?`, { status: 503 });
    const { responder } = candidates[this.turn(`r:${subject}`, candidates.length)];
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const wire = JSON.stringify(data ?? null);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new EnjinError('bus_timeout', `no answer on ${subject} within ${timeoutMs} ms`, { status: 504 })), timeoutMs);
    });
    try {
      const answer = Promise.resolve().then(() => responder(JSON.parse(wire), { subject, sender: null })).then(
        (reply) => JSON.parse(JSON.stringify(reply ?? null)) as T,
        (err: unknown) => {
          // Errors cross the bus as data, so a caller sees the same thing over NATS.
          const body = err instanceof EnjinError ? err.toJSON() : { code: 'internal', message: (err as Error)?.message ?? String(err) };
          throw EnjinError.fromJSON(body, err instanceof EnjinError ? err.status : 500);
        },
      );
      return await Promise.race([answer, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  onStatus(_listener: (status: BusStatus) => void): Subscription {
    // In process: never disconnected.
    return { unsubscribe: () => undefined };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.entries.clear();
    this.responders.clear();
  }

  /** The next index in 0..size-1 for a round-robin key. */
  private turn(key: string, size: number): number {
    const next = ((this.turns.get(key) ?? -1) + 1) % size;
    this.turns.set(key, next);
    return next;
  }
}
