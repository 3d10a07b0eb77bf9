// The UNIX users apps run as: created on first need (useradd, idempotent, safe against another process doing the
// same at once) and looked up by name.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EnjinError } from '../../core/errors.ts';

const run = promisify(execFile);

export interface SystemUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user every app runs as while enjin runs as root (a user per project comes with tenancy). */
export const APP_USER = 'enjin-apps';

async function lookup(name: string): Promise<SystemUser | null> {
  try {
    const { stdout } = await run('getent', ['passwd', name]);
    const f = stdout.trim().split(':');
    return { name, uid: Number(f[2]), gid: Number(f[3]) };
  } catch (err) {
    // getent exits 2 when there is no such user
    if ((err as { code?: unknown }).code === 2) return null;
    throw err;
  }
}

async function create(name: string): Promise<SystemUser> {
  const user = (await lookup(name)) ?? (await useradd(name));
  if (user.uid === 0 || user.gid === 0) throw new EnjinError('app_user_unavailable', `the system user ${name} has uid or gid 0; apps must not run as root: give it its own uid and gid`, { status: 500 });
  return user;
}

async function useradd(name: string): Promise<SystemUser> {
  try {
    // No home and no login: it only ever runs what enjin starts, with a HOME enjin gives it.
    await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name]);
  } catch (err) {
    // 9: the name was taken meanwhile (another enjin made it): that is the user we want.
    if ((err as { code?: unknown }).code !== 9) {
      throw new EnjinError('app_user_unavailable', `could not create the system user ${name} that apps run as (${((err as { stderr?: string }).stderr || (err as Error).message).trim()}); create it with \`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${name}\``, { status: 500, cause: err });
    }
  }
  const made = await lookup(name);
  if (!made) throw new EnjinError('app_user_unavailable', `the system user ${name} was created but cannot be looked up; check /etc/passwd and nsswitch.conf`, { status: 500 });
  return made;
}

const made = new Map<string, Promise<SystemUser>>();

/** The user named `name`, created if it does not exist; concurrent calls share one useradd. */
export function ensureSystemUser(name: string): Promise<SystemUser> {
  let p = made.get(name);
  if (!p) {
    p = create(name);
    made.set(name, p);
    p.catch(() => made.delete(name));
  }
  return p;
}
