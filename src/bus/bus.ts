// The Bus: how controller, agents and routers talk. One interface; an in-process backend (embedded mode), an IPC
// bridge (the router's child process in `enjin up`) and NATS (cluster mode), all held to one conformance suite.

export interface Subscription {
  unsubscribe(): void;
}

export interface BusMessage {
  subject: string;
  data: unknown;
  /**
   * Who sent it, when the message travelled in a signed envelope whose signature this side checked (see signing.ts):
   * a node id or a controller id. null for an unsigned message. A receiver that acts on a node's word checks that
   * the sender is the node the payload speaks for.
   */
  sender: string | null;
}

export interface SubscribeOptions {
  /**
   * A queue group: each message goes to one member of the group instead of to every subscriber (NATS semantics), so
   * several controllers can share the work of answering agents.
   */
  queue?: string;
}

/** What a responder learns of a request beyond its payload. */
export interface RequestMeta {
  subject: string;
  /** as BusMessage.sender */
  sender: string | null;
}

/**
 * Connection events of a networked backend. 'disconnected': messages published now may be lost; 'reconnected': the
 * link is back and anything missed must be recovered by a resync (the state exchange does that on this event).
 * In-process backends never emit them.
 */
export type BusStatus = 'disconnected' | 'reconnected';

export interface Bus {
  /** Fire-and-forget. Payloads must be JSON-serializable: backends copy them, never share them. */
  publish(subject: string, data: unknown): void;
  /** NATS-style subjects: `*` matches one token, `>` one or more trailing tokens. */
  subscribe(subject: string, handler: (msg: BusMessage) => void, opts?: SubscribeOptions): Subscription;
  /**
   * Answers requests on `subject`. A thrown error travels back as { code, message } and is re-thrown by `request`
   * as an EnjinError. Only one responder per subject is expected, unless they share a queue group.
   */
  handle(subject: string, responder: (data: unknown, meta: RequestMeta) => Promise<unknown>, opts?: SubscribeOptions): Subscription;
  /** Request/reply. Rejects with EnjinError 'bus_timeout' (504) or 'bus_no_responder' (503). */
  request<T = unknown>(subject: string, data: unknown, opts?: { timeoutMs?: number }): Promise<T>;
  /** Connection events (see BusStatus). */
  onStatus(listener: (status: BusStatus) => void): Subscription;
  close(): Promise<void>;
}
