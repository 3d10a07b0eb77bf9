// DATA/credentials.json: the API address and an admin token, for the CLI on this host. A token the store still knows is
// kept across restarts; otherwise a new one is made (so each controller on a shared store has a working one).
import { chmodSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { TokenAuth } from '../../controller/auth/tokens.ts';
import { componentLogger } from '../../log/logger.ts';

const log = componentLogger('credentials');

export async function adminToken(auth: Pick<TokenAuth, 'check' | 'create'>, file: string, name: string): Promise<string> {
  if (existsSync(file)) {
    try {
      const { token } = JSON.parse(readFileSync(file, 'utf8')) as { token?: string };
      if (token && (await auth.check(token)) === 'admin') return token;
      log.info({ file }, 'the token in credentials.json is not known to this store; writing a new one');
    } catch (err) {
      log.warn({ err, file }, 'credentials.json cannot be read; writing a new one');
    }
  }
  return auth.create(name);
}

export function writeCredentials(file: string, creds: { api: string; token: string }): void {
  const tmp = `${file}.tmp`;
  // A left-over temp file would keep its old mode: start from none.
  rmSync(tmp, { force: true });
  writeFileSync(tmp, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
