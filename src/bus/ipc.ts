// A Bus across a Node IPC channel: a child process (the router in `enjin up`) uses IpcBus, the parent relays it onto its
// own bus with relayBus, so a component in another process sees the same subjects, requests and errors.
import { randomUUID } from 'node:crypto';
import { EnjinError } from '../core/errors.ts';
import type { Bus, BusMessage, BusStatus, RequestMeta, SubscribeOptions, Subscription } from './bus.ts';

/** Either end of a child_process IPC channel: `process` in the child, the ChildProcess in the parent. */
export interface IpcEndpoint {
  send?(message: unknown, sendHandle?: undefined, options?: undefined, callback?: (err: Error | null) => void): boolean;
  readonly connected?: boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'disconnect', listener: () => void): unknown;
}

interface WireError {
  code: string;
  message: string;
  status: number;
  details?: unknown;
}

/** What crosses the channel; other messages on the same channel (a child's "ready") are left alone. */
type Frame =
  | { t: 'sub'; id: string; subject: string; queue?: string }
  | { t: 'unsub'; id: string }
  | { t: 'pub'; subject: string; data: unknown }
  | { t: 'handle'; id: string; subject: string; queue?: string }
  | { t: 'unhandle'; id: string }
  | { t: 'req'; id: string; subject: string; data: unknown; timeoutMs: number }
  | { t: 'res'; id: string; data?: unknown; error?: WireError }
  | { t: 'msg'; id: string; subject: string; data: unknown; sender?: string | null }
  | { t: 'call'; id: string; handler: string; subject: string; data: unknown; sender?: string | null }
  | { t: 'reply'; id: string; data?: unknown; error?: WireError };

const KEY = 'enjinBus';

function frameOf(message: unknown): Frame | null {
  if (typeof message !== 'object' || message === null || !(KEY in message)) return null;
  const frame = (message as Record<string, unknown>)[KEY];
  return typeof frame === 'object' && frame !== null && typeof (frame as { t?: unknown }).t === 'string' ? (frame as Frame) : null;
}

function wireError(err: unknown): WireError {
  if (err instanceof EnjinError) return { ...err.toJSON(), status: err.status };
  return { code: 'internal', message: (err as Error)?.message ?? String(err), status: 500 };
}

function fromWire(error: WireError): EnjinError {
  return EnjinError.fromJSON(error, typeof error.status === 'number' ? error.status : 500);
}

/**
 * Sends a frame; a channel that closed meanwhile is not an error worth more than a warning (the disconnect handler
 * cleans up), but it is never silent.
 */
function sendFrame(endpoint: IpcEndpoint, frame: Frame): void {
  if (endpoint.send === undefined || endpoint.connected === false) return;
  try {
    endpoint.send({ [KEY]: frame }, undefined, undefined, (err) => {
      if (err) process.emitWarning(`bus frame ${frame.t} was not sent over IPC: ${err.message}`);
    });
  } catch (err) {
    process.emitWarning(`bus frame ${frame.t} was not sent over IPC: ${(err as Error).message}`);
  }
}

const closedError = () => new EnjinError('bus_closed', 'the bus is closed: the process on the other end of the IPC channel is gone', { status: 503 });

/** The child's side: a full Bus whose subjects live on the parent's bus. */
export class IpcBus implements Bus {
  readonly #endpoint: IpcEndpoint;
  /** ids are unique per IpcBus, so several may share one channel */
  readonly #prefix = randomUUID().slice(0, 8);
  #next = 0;
  readonly #subscribers = new Map<string, (msg: BusMessage) => void>();
  readonly #responders = new Map<string, (data: unknown, meta: RequestMeta) => Promise<unknown>>();
  readonly #pending = new Map<string, { resolve(v: unknown): void; reject(e: unknown): void; timer: NodeJS.Timeout }>();
  #closed = false;
  readonly #onMessage = (message: unknown) => this.#receive(message);
  readonly #onDisconnect = () => void this.close();

  constructor(endpoint: IpcEndpoint) {
    this.#endpoint = endpoint;
    endpoint.on('message', this.#onMessage);
    endpoint.on('disconnect', this.#onDisconnect);
  }

  get closed(): boolean {
    return this.#closed;
  }

  publish(subject: string, data: unknown): void {
    if (this.#closed) return;
    sendFrame(this.#endpoint, { t: 'pub', subject, data: data ?? null });
  }

  subscribe(subject: string, handler: (msg: BusMessage) => void, opts: SubscribeOptions = {}): Subscription {
    const id = this.#id();
    this.#subscribers.set(id, handler);
    if (!this.#closed) sendFrame(this.#endpoint, { t: 'sub', id, subject, ...(opts.queue === undefined ? {} : { queue: opts.queue }) });
    return {
      unsubscribe: () => {
        if (this.#subscribers.delete(id) && !this.#closed) sendFrame(this.#endpoint, { t: 'unsub', id });
      },
    };
  }

  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts: SubscribeOptions = {}): Subscription {
    if (subject.includes('*') || subject.includes('>')) throw new Error('IpcBus.handle takes a concrete subject');
    const id = this.#id();
    this.#responders.set(id, responder);
    if (!this.#closed) sendFrame(this.#endpoint, { t: 'handle', id, subject, ...(opts.queue === undefined ? {} : { queue: opts.queue }) });
    return {
      unsubscribe: () => {
        if (this.#responders.delete(id) && !this.#closed) sendFrame(this.#endpoint, { t: 'unhandle', id });
      },
    };
  }

  onStatus(_listener: (status: BusStatus) => void): Subscription {
    // The channel to the parent either works or the child is gone.
    return { unsubscribe: () => undefined };
  }

  request<T = unknown>(subject: string, data: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closed) return Promise.reject(closedError());
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const id = this.#id();
    return new Promise<T>((resolve, reject) => {
      // The parent times out too; this one also covers a parent too busy to answer at all.
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new EnjinError('bus_timeout', `no answer on ${subject} within ${timeoutMs} ms`, { status: 504 }));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      sendFrame(this.#endpoint, { t: 'req', id, subject, data: data ?? null, timeoutMs });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Tell the relay first, so the parent's bus forgets this side while the channel is still there.
    for (const id of this.#subscribers.keys()) sendFrame(this.#endpoint, { t: 'unsub', id });
    for (const id of this.#responders.keys()) sendFrame(this.#endpoint, { t: 'unhandle', id });
    this.#closed = true;
    this.#endpoint.off('message', this.#onMessage);
    this.#endpoint.off('disconnect', this.#onDisconnect);
    this.#subscribers.clear();
    this.#responders.clear();
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(closedError());
    }
    this.#pending.clear();
  }

  #id(): string {
    return `${this.#prefix}.${++this.#next}`;
  }

  #receive(message: unknown): void {
    const frame = frameOf(message);
    if (frame === null || this.#closed) return;
    switch (frame.t) {
      case 'msg': {
        const handler = this.#subscribers.get(frame.id);
        if (handler === undefined) return;
        try {
          handler({ subject: frame.subject, data: frame.data, sender: frame.sender ?? null });
        } catch (err) {
          process.emitWarning(`bus subscriber for ${frame.subject} threw: ${(err as Error).message}`);
        }
        return;
      }
      case 'call': {
        // Several IpcBus may share a channel: a call for another one's responder is not ours to refuse.
        if (!frame.handler.startsWith(`${this.#prefix}.`)) return;
        const responder = this.#responders.get(frame.handler);
        if (responder === undefined) {
          sendFrame(this.#endpoint, { t: 'reply', id: frame.id, error: { code: 'bus_no_responder', message: `nothing answers on ${frame.subject} any more`, status: 503 } });
          return;
        }
        Promise.resolve()
          .then(() => responder(frame.data, { subject: frame.subject, sender: frame.sender ?? null }))
          .then(
            (reply) => sendFrame(this.#endpoint, { t: 'reply', id: frame.id, data: reply ?? null }),
            (err: unknown) => sendFrame(this.#endpoint, { t: 'reply', id: frame.id, error: wireError(err) }),
          );
        return;
      }
      case 'res': {
        const pending = this.#pending.get(frame.id);
        if (pending === undefined) return;
        this.#pending.delete(frame.id);
        clearTimeout(pending.timer);
        if (frame.error) pending.reject(fromWire(frame.error));
        else pending.resolve(frame.data ?? null);
        return;
      }
      default:
        return;
    }
  }
}

export interface BusRelay {
  /** drops every subscription and responder the other side made; calls in flight fail with bus_no_responder */
  close(): void;
}

/**
 * The parent's side: carries out on `bus` what the IpcBus at the other end of `endpoint` asks, and hands it what it
 * subscribed to and the requests it answers. Closes itself when the channel disconnects.
 */
export function relayBus(bus: Bus, endpoint: IpcEndpoint): BusRelay {
  const subscriptions = new Map<string, Subscription>();
  const responders = new Map<string, Subscription>();
  const calls = new Map<string, { resolve(v: unknown): void; reject(e: unknown): void }>();
  let nextCall = 0;
  let closed = false;

  const onMessage = (message: unknown) => {
    const frame = frameOf(message);
    if (frame === null || closed) return;
    switch (frame.t) {
      case 'sub':
        subscriptions.get(frame.id)?.unsubscribe();
        subscriptions.set(
          frame.id,
          bus.subscribe(
            frame.subject,
            (msg) => sendFrame(endpoint, { t: 'msg', id: frame.id, subject: msg.subject, data: msg.data, sender: msg.sender }),
            frame.queue === undefined ? {} : { queue: frame.queue },
          ),
        );
        return;
      case 'unsub':
        subscriptions.get(frame.id)?.unsubscribe();
        subscriptions.delete(frame.id);
        return;
      case 'pub':
        bus.publish(frame.subject, frame.data);
        return;
      case 'handle':
        responders.get(frame.id)?.unsubscribe();
        responders.set(
          frame.id,
          bus.handle(
            frame.subject,
            (data, { subject, sender }) =>
              new Promise((resolve, reject) => {
                const id = String(++nextCall);
                calls.set(id, { resolve, reject });
                sendFrame(endpoint, { t: 'call', id, handler: frame.id, subject, data, sender });
              }),
            frame.queue === undefined ? {} : { queue: frame.queue },
          ),
        );
        return;
      case 'unhandle':
        responders.get(frame.id)?.unsubscribe();
        responders.delete(frame.id);
        return;
      case 'req':
        bus.request(frame.subject, frame.data, { timeoutMs: frame.timeoutMs }).then(
          (data) => sendFrame(endpoint, { t: 'res', id: frame.id, data: data ?? null }),
          (err: unknown) => sendFrame(endpoint, { t: 'res', id: frame.id, error: wireError(err) }),
        );
        return;
      case 'reply': {
        const call = calls.get(frame.id);
        if (call === undefined) return;
        calls.delete(frame.id);
        if (frame.error) call.reject(fromWire(frame.error));
        else call.resolve(frame.data ?? null);
        return;
      }
      default:
        return;
    }
  };

  const close = () => {
    if (closed) return;
    closed = true;
    endpoint.off('message', onMessage);
    endpoint.off('disconnect', close);
    for (const s of [...subscriptions.values(), ...responders.values()]) s.unsubscribe();
    subscriptions.clear();
    responders.clear();
    for (const call of calls.values()) call.reject(new EnjinError('bus_no_responder', 'the process that answered this subject went away', { status: 503 }));
    calls.clear();
  };

  endpoint.on('message', onMessage);
  endpoint.on('disconnect', close);
  return { close };
}
