// Turns database errors into coded EnjinErrors: broken constraints become 409s, a lost server becomes a 503.
import { EnjinError } from '../core/errors.ts';

interface DatabaseErrorLike {
  code?: unknown;
  constraint?: unknown;
  detail?: unknown;
  message?: unknown;
}

/** What a broken constraint means to the person whose request broke it. */
const CONSTRAINT_MESSAGES: Record<string, string> = {
  workspaces_pkey: 'a workspace with this id already exists',
  workspaces_name_unique: 'a workspace with this name already exists; choose another name',
  tokens_pkey: 'a token with this id already exists',
  tokens_hash_unique: 'a token with this secret already exists; generate a new secret',
  tokens_workspace_fk: 'the token names a workspace that does not exist',
  projects_name_unique: 'a project with this name already exists in the workspace; choose another name or deploy to that project',
  projects_workspace_fk: 'the project names a workspace that does not exist',
  versions_pkey: 'a version with this id already exists',
  versions_number_unique: 'this project already has a version with this number',
  versions_project_fk: 'the version names a project that does not exist',
  instances_workspace_fk: 'the instance names a workspace that does not exist',
  instances_project_fk: 'the instance names a project that does not exist',
  instances_version_fk: 'the instance names a version that does not exist',
  jobs_pkey: 'a job with this id already exists',
  job_logs_job_fk: 'log lines were written for a job that does not exist',
};

/** Network and server-shutdown failures: the store may come back, so the caller should retry later. */
export function isConnectionError(err: unknown): boolean {
  const e = err as DatabaseErrorLike | null;
  if (!e || typeof e !== 'object') return false;
  const code = typeof e.code === 'string' ? e.code : '';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOENT'].includes(code)) return true;
  // SQLSTATE 08xxx: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot connect now.
  if (/^08/.test(code) || ['57P01', '57P02', '57P03'].includes(code)) return true;
  const message = typeof e.message === 'string' ? e.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message);
}

/** Maps what the database threw; anything it does not recognise is returned unchanged. */
export function translateDatabaseError(err: unknown, storeName: string): unknown {
  if (err instanceof EnjinError) return err;
  const e = err as DatabaseErrorLike | null;
  if (!e || typeof e !== 'object') return err;
  const constraint = typeof e.constraint === 'string' ? e.constraint : '';
  const detail = typeof e.detail === 'string' ? e.detail : '';
  // 23505 unique_violation, 23503 foreign_key_violation: the request contradicts what is stored.
  if (e.code === '23505' || e.code === '23503') {
    const known = CONSTRAINT_MESSAGES[constraint];
    const message = known ?? (e.code === '23505' ? 'this already exists' : 'this refers to something that does not exist');
    return new EnjinError('conflict', detail ? `${message} (${detail.replace(/\.$/, '')})` : message, { status: 409, cause: err });
  }
  if (isConnectionError(err)) return storeUnavailable(storeName, err);
  return err;
}

export function storeUnavailable(storeName: string, cause: unknown): EnjinError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new EnjinError(
    'store_unavailable',
    `the store at ${storeName} is unreachable (${reason}); nothing was changed: changes are refused until it is back, so retry then (check that the database server is running and reachable)`,
    { status: 503, cause },
  );
}

/** A connection URL fit for messages and logs: the password (in the authority or as a parameter) removed. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    u.searchParams.delete('password');
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}
