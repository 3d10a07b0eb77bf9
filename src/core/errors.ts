// One coded error type for the whole product: a stable code, an HTTP status, and a message that tells the user what to do.

export interface ErrorDetail {
  /** file the problem is in (manifests, packages) */
  file?: string;
  line?: number;
  column?: number;
  /** dotted path of the offending field, e.g. services.web.instances */
  path?: string;
  message: string;
}

export class EnjinError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: ErrorDetail[];

  constructor(code: string, message: string, opts: { status?: number; details?: ErrorDetail[]; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EnjinError';
    this.code = code;
    this.status = opts.status ?? 400;
    this.details = opts.details ?? [];
  }

  toJSON(): { code: string; message: string; details?: ErrorDetail[] } {
    return this.details.length ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }

  /** Rebuilds an error that crossed a process or HTTP boundary as JSON. */
  static fromJSON(body: unknown, status = 500): EnjinError {
    const b = (body ?? {}) as { code?: unknown; message?: unknown; details?: unknown };
    return new EnjinError(
      typeof b.code === 'string' ? b.code : 'internal',
      typeof b.message === 'string' ? b.message : 'unexpected error',
      { status, details: Array.isArray(b.details) ? (b.details as ErrorDetail[]) : [] },
    );
  }
}

export const notFound = (what: string, hint = ''): EnjinError =>
  new EnjinError('not_found', `${what} not found${hint ? `; ${hint}` : ''}`, { status: 404 });

export const invalid = (message: string, details: ErrorDetail[] = []): EnjinError =>
  new EnjinError('invalid_request', message, { status: 400, details });

export const conflict = (code: string, message: string): EnjinError => new EnjinError(code, message, { status: 409 });

const mib = (bytes: number): string => `${Math.floor(bytes / 2 ** 20)} MiB`;

/** A node's disk for versions and logs has less free space than its threshold: it takes no new versions or instances. */
export const nodeDiskFull = (node: string, freeBytes: number, minFreeBytes: number): EnjinError =>
  new EnjinError(
    'node_disk_full',
    `node ${node} has ${mib(freeBytes)} free for versions and logs, less than its minimum of ${mib(minFreeBytes)}; free space there (old logs, unused files) or lower its threshold with \`enjin up --min-free-disk\`, then try again`,
    { status: 507 },
  );

/** Formats an error for a terminal: the message, then one line per detail as file:line:column. */
export function formatError(err: unknown): string {
  if (err instanceof EnjinError) {
    const lines = [`error [${err.code}]: ${err.message}`];
    for (const d of err.details) {
      const where = d.file ? `${d.file}${d.line ? `:${d.line}${d.column ? `:${d.column}` : ''}` : ''}: ` : d.path ? `${d.path}: ` : '';
      lines.push(`  ${where}${d.message}`);
    }
    return lines.join('\n');
  }
  return `error: ${err instanceof Error ? err.message : String(err)}`;
}
