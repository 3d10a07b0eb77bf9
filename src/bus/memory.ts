// The in-process bus for embedded mode: same semantics as NATS (subject wildcards, copied payloads, request timeouts).
import { EnjinError } from '../core/errors.ts';
import type { Bus, BusMessage, Subscription } from './bus.ts';

interface Entry {
  pattern: string[];
  handler: (msg: BusMessage) => void;
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
  private responders = new Map<string, (data: unknown, subject: string) => Promise<unknown>>();
  private closed = false;

  publish(subject: string, data: unknown): void {
    if (this.closed) return;
    const tokens = subject.split('.');
    // Serialize once: the wire copy keeps publishers and subscribers from sharing objects, as NATS would.
    const wire = JSON.stringify(data ?? null);
    for (const entry of [...this.entries]) {
      if (!subjectMatches(entry.pattern, tokens)) continue;
      const msg: BusMessage = { subject, data: JSON.parse(wire) };
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

  subscribe(subject: string, handler: (msg: BusMessage) => void): Subscription {
    const entry: Entry = { pattern: subject.split('.'), handler };
    this.entries.add(entry);
    return { unsubscribe: () => void this.entries.delete(entry) };
  }

  handle(subject: string, responder: (data: unknown, subject: string) => Promise<unknown>): Subscription {
    if (subject.includes('*') || subject.includes('>')) throw new Error('MemoryBus.handle takes a concrete subject');
    this.responders.set(subject, responder);
    return { unsubscribe: () => { if (this.responders.get(subject) === responder) this.responders.delete(subject); } };
  }

  async request<T = unknown>(subject: string, data: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) throw new EnjinError('bus_closed', 'the bus is closed', { status: 503 });
    const responder = this.responders.get(subject);
    if (!responder) throw new EnjinError('bus_no_responder', `nothing answers on ${subject}; is that component running?`, { status: 503 });
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const wire = JSON.stringify(data ?? null);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new EnjinError('bus_timeout', `no answer on ${subject} within ${timeoutMs} ms`, { status: 504 })), timeoutMs);
    });
    try {
      const answer = Promise.resolve().then(() => responder(JSON.parse(wire), subject)).then(
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

  async close(): Promise<void> {
    this.closed = true;
    this.entries.clear();
    this.responders.clear();
  }
}
