// Instances' environments (config values, secrets) at rest on a node: sealed with AES-256-GCM under the node's own
// key, DATA/secrets.key, in every file the agent keeps, and opened again when the agent reads its files back.
import { readFileSync } from 'node:fs';
import { makeKeyFileOnce } from '../process/key-file.ts';
import { dirname, join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { InstanceSpec } from '../core/messages.ts';
import { isSealed, parseSealingKey, sealJson, sealingKey, SEALING_KEY_BYTES, unsealJson, type SealingKey } from '../core/sealing.ts';
import { componentLogger } from '../log/logger.ts';

const log = componentLogger('agent');

export const NODE_SECRETS_KEY_FILE = 'secrets.key';

/** An instance spec as the agent writes it: `env` replaced by `sealedEnv`. */
export type SealedSpec = Omit<InstanceSpec, 'env'> & { sealedEnv: string };

/**
 * The node's key, made on first use (0600, the agent's user: root on a real node) beside the files it protects. Apps
 * run as their own users and cannot read it; it never leaves the node, so a copy of the state files alone (a backup,
 * a disk image) does not reveal the values.
 */
export class NodeSecrets {
  readonly keyPath: string;
  private key: SealingKey | null = null;
  /**
   * The sealed form of each env last sealed: the state file is written on every change of any instance, and sealing
   * every env again each time would cost a cipher run per instance per change. Checked against the env's JSON, so an
   * env changed in place is sealed again.
   */
  private readonly sealedEnvs = new WeakMap<Record<string, string>, { json: string; sealed: string }>();

  constructor(keyPath: string) {
    this.keyPath = keyPath;
  }

  /** The key for the state files in `stateFile`'s directory (the agent's data directory). */
  static beside(stateFile: string): NodeSecrets {
    return new NodeSecrets(join(dirname(stateFile), NODE_SECRETS_KEY_FILE));
  }

  /** A spec to write: its env sealed. Throws when the key cannot be made (a full disk): nothing is written in clear. */
  sealSpec(spec: InstanceSpec): SealedSpec {
    const { env, ...rest } = spec;
    const json = JSON.stringify(env);
    let cached = this.sealedEnvs.get(env);
    if (cached?.json !== json) {
      cached = { json, sealed: sealJson(this.keyToWrite(), env) };
      if (env && typeof env === 'object') this.sealedEnvs.set(env, cached);
    }
    return { ...rest, sealedEnv: cached.sealed };
  }

  /**
   * A spec as read from `file`: a sealed env opened, or a plain one (written by an agent before env was sealed) taken
   * as it is, `plain` telling the caller to write the file again. Anything else is left for the spec check to refuse.
   * Throws agent_state_corrupt when the env was sealed under a key this node no longer has, sealed_corrupt if changed.
   */
  openSpec(stored: unknown, file: string): { spec: InstanceSpec; plain: boolean } {
    const s = stored as Partial<SealedSpec> & { env?: unknown };
    if (!s || typeof s !== 'object' || s.sealedEnv === undefined) return { spec: stored as InstanceSpec, plain: s?.env !== undefined };
    const { sealedEnv, ...rest } = s;
    if (!isSealed(sealedEnv)) throw new EnjinError('sealed_corrupt', `${file}: the env of instance ${String(s.instanceId)} is not sealed data; fix or remove the file`, { status: 500 });
    const key = this.keyToRead(file, sealedEnv);
    let env: Record<string, string>;
    try {
      env = unsealJson<Record<string, string>>(key, sealedEnv, (sealedKeyId) => this.wrongKey(file, sealedKeyId));
    } catch (err) {
      if (!(err instanceof EnjinError) || err.code !== 'sealed_corrupt') throw err;
      throw new EnjinError('sealed_corrupt', `${file}: the env of instance ${String(s.instanceId)} cannot be opened (${err.message}); restore the file from a backup, or remove it (the agent then forgets what it holds there)`, { status: 500, cause: err });
    }
    return { spec: { ...(rest as Omit<InstanceSpec, 'env'>), env }, plain: false };
  }

  private keyToWrite(): SealingKey {
    this.key ??= this.readKey() ?? this.makeKey();
    return this.key;
  }

  private keyToRead(file: string, sealed: string): SealingKey {
    this.key ??= this.readKey();
    if (!this.key) {
      throw new EnjinError(
        'agent_state_corrupt',
        `${file} holds environments sealed under the node key ${sealed.split(':')[2]}, and ${this.keyPath} is missing; restore it from a backup of this node, or remove ${file} (the agent then forgets what it holds there)`,
        { status: 500 },
      );
    }
    return this.key;
  }

  private wrongKey(file: string, sealedKeyId: string): EnjinError {
    return new EnjinError(
      'agent_state_corrupt',
      `${file} holds environments sealed under the node key ${sealedKeyId}, and ${this.keyPath} is key ${this.key?.keyId}; restore that node's ${NODE_SECRETS_KEY_FILE}, or remove ${file} (the agent then forgets what it holds there)`,
      { status: 500 },
    );
  }

  private readKey(): SealingKey | null {
    let text: string;
    try {
      text = readFileSync(this.keyPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    // A damaged key file is never replaced: what it sealed would be lost for good.
    const key = parseSealingKey(text, this.keyPath);
    const k = sealingKey(key);
    key.fill(0);
    return k;
  }

  /** Made once (see makeKeyFileOnce): another agent's process racing for it ends with the same key. */
  private makeKey(): SealingKey {
    if (makeKeyFileOnce(this.keyPath, SEALING_KEY_BYTES)) log.info({ path: this.keyPath }, 'made the key that seals instances\' environments on this node');
    const k = this.readKey();
    if (!k) throw new Error(`${this.keyPath} was removed while it was being made`);
    return k;
  }
}
