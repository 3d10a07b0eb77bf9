// Who an instance's processes run as, where, and with what environment: its own process, and its health command,
// which runs exactly like it.
import type { AppAccounts } from './app-accounts.ts';
import { instanceEnv } from './build-env.ts';
import type { Driver } from './drivers/driver.ts';
import { gateCheck } from './health-checks.ts';
import { buildOf } from './instance-spec.ts';
import { probeKind, runProbe, type ProbeOutcome } from './probe-runner.ts';
import type { Managed } from './supervised-instance.ts';
import type { VersionStore } from './versions.ts';
import { volumeEnvFor, type VolumeStore } from './volumes.ts';

export interface RunEnvSource {
  driver: Driver;
  accounts: AppAccounts;
  versions: VersionStore;
  volumes?: Pick<VolumeStore, 'ensure'>;
  baseEnv: Record<string, string>;
}

export function runEnvOf(o: RunEnvSource, m: Managed): { account: ReturnType<AppAccounts['forProject']>; versionDir: string; env: Record<string, string> } {
  const spec = m.spec;
  const account = o.accounts.forProject(spec.project);
  const versionDir = o.versions.path(buildOf(spec));
  const env = { ...instanceEnv(o.baseEnv, account.home, spec, versionDir, m.port), ...volumeEnvFor(o.volumes, `instance ${spec.instanceId}`, spec.workspace, spec.project, spec.volumes) };
  return { account, versionDir, env };
}

/** One probe of the instance's health check (or of its readiness gate), run as the instance runs. */
export async function probeInstance(o: RunEnvSource, m: Managed, timeoutMs: number): Promise<ProbeOutcome> {
  const check = gateCheck(m.spec);
  if (probeKind(check, m.port !== null) !== 'command') {
    // An HTTP or TCP probe needs only the port: no environment to build (nor volume directories to ensure).
    return runProbe(check, { host: '127.0.0.1', port: m.port, cwd: '/', env: {}, commandId: '' }, timeoutMs, o.driver);
  }
  let target;
  try {
    const { account, versionDir, env } = runEnvOf(o, m);
    target = { host: '127.0.0.1', port: m.port, cwd: versionDir, env, uid: account.uid, gid: account.gid, commandId: `probe-${m.spec.instanceId}` };
  } catch (err) {
    return { ok: false, output: `the probe could not be prepared: ${(err as Error).message}`, durationMs: 0 };
  }
  return runProbe(check, target, timeoutMs, o.driver);
}
