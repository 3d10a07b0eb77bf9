// The Bus: how controller, agents and routers talk. One interface; an in-process backend now, NATS in cluster mode.

export interface Subscription {
  unsubscribe(): void;
}

export interface BusMessage {
  subject: string;
  data: unknown;
}

export interface Bus {
  /** Fire-and-forget. Payloads must be JSON-serializable: backends copy them, never share them. */
  publish(subject: string, data: unknown): void;
  /** NATS-style subjects: `*` matches one token, `>` one or more trailing tokens. */
  subscribe(subject: string, handler: (msg: BusMessage) => void): Subscription;
  /**
   * Answers requests on `subject`. A thrown error travels back as { code, message } and is re-thrown by `request`
   * as an EnjinError. Only one responder per subject is expected.
   */
  handle(subject: string, responder: (data: unknown, subject: string) => Promise<unknown>): Subscription;
  /** Request/reply. Rejects with EnjinError 'bus_timeout' (504) or 'bus_no_responder' (503). */
  request<T = unknown>(subject: string, data: unknown, opts?: { timeoutMs?: number }): Promise<T>;
  close(): Promise<void>;
}
