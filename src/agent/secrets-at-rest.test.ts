import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnjinError } from '../core/errors.ts';
import type { InstanceSpec } from '../core/messages.ts';
import { NODE_SECRETS_KEY_FILE, NodeSecrets } from './secrets-at-rest.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-node-secrets-'));
test.after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(root, `d${++n}`);
  mkdirSync(d);
  return d;
};

const SECRET = `s3cret-${process.pid}-unique`;
const spec: InstanceSpec = {
  instanceId: 'ins_a', workspace: 'acme', project: 'p', service: 'web', versionId: 'ver_1', command: 'exec app',
  env: { API_TOKEN: SECRET, EMPTY: '' }, listens: true, healthPath: '/', startTimeout: 10, stopTimeout: 5,
};

const code = (c: string, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof EnjinError, String(e));
  assert.equal(e.code, c, e.message);
  if (message) assert.match(e.message, message);
  return true;
};

test('a spec is written with its env sealed under a node key made on first use, and read back whole', () => {
  const dir = freshDir();
  const secrets = NodeSecrets.beside(join(dir, 'state.json'));
  assert.deepEqual(readdirSync(dir), [], 'nothing made before something is sealed');
  const sealed = secrets.sealSpec(spec);
  assert.equal((sealed as { env?: unknown }).env, undefined);
  assert.match(sealed.sealedEnv, /^enjin-sealed:v1:[0-9a-f]{16}:/);
  assert.ok(!JSON.stringify(sealed).includes(SECRET));
  assert.equal(sealed.instanceId, 'ins_a');
  const keyPath = join(dir, NODE_SECRETS_KEY_FILE);
  assert.equal(statSync(keyPath).mode & 0o777, 0o600);
  assert.equal(statSync(keyPath).uid, process.getuid!());
  assert.deepEqual(readdirSync(dir), [NODE_SECRETS_KEY_FILE], 'no temporary file left behind');
  // another reader (a restarted agent) opens it with the key on disk; the key file is never rewritten
  const key = readFileSync(keyPath, 'utf8');
  const again = NodeSecrets.beside(join(dir, 'desired.json'));
  assert.deepEqual(again.openSpec(JSON.parse(JSON.stringify(sealed)), 'state.json'), { spec, plain: false });
  again.sealSpec(spec);
  assert.equal(readFileSync(keyPath, 'utf8'), key);
  // an unchanged env is not sealed again on every write; one changed in place is
  const mutable = { ...spec, env: { ...spec.env } };
  const before = again.sealSpec(mutable).sealedEnv;
  assert.equal(again.sealSpec(mutable).sealedEnv, before);
  mutable.env.API_TOKEN = 'rotated';
  const after = again.sealSpec(mutable);
  assert.notEqual(after.sealedEnv, before);
  assert.equal(again.openSpec(after, 'f').spec.env.API_TOKEN, 'rotated');
});

test('a spec an earlier agent wrote in clear is read as it is, and says so', () => {
  const secrets = NodeSecrets.beside(join(freshDir(), 'state.json'));
  assert.deepEqual(secrets.openSpec(spec, 'state.json'), { spec, plain: true });
});

test('a missing or other node key, or a changed env, refuses the file with what to do', () => {
  const dir = freshDir();
  const sealed = NodeSecrets.beside(join(dir, 'state.json')).sealSpec(spec);
  const keyPath = join(dir, NODE_SECRETS_KEY_FILE);
  const key = readFileSync(keyPath);
  rmSync(keyPath);
  assert.throws(() => NodeSecrets.beside(join(dir, 'state.json')).openSpec(sealed, '/x/state.json'), code('agent_state_corrupt', /\/x\/state\.json holds environments sealed under the node key [0-9a-f]{16}, and .*secrets\.key is missing; restore it/));
  // another key in its place: named, and never replaced
  NodeSecrets.beside(join(dir, 'state.json')).sealSpec(spec);
  const other = readFileSync(keyPath, 'utf8');
  assert.throws(() => NodeSecrets.beside(join(dir, 'state.json')).openSpec(sealed, '/x/state.json'), code('agent_state_corrupt', /sealed under the node key [0-9a-f]{16}, and .*secrets\.key is key [0-9a-f]{16}; restore/));
  assert.equal(readFileSync(keyPath, 'utf8'), other);
  writeFileSync(keyPath, key);
  const secrets = NodeSecrets.beside(join(dir, 'state.json'));
  assert.equal(secrets.openSpec(sealed, 'f').spec.env.API_TOKEN, SECRET);
  const fields = sealed.sealedEnv.split(':');
  const body = Buffer.from(fields[4]!, 'base64');
  body[0]! ^= 1;
  const changed = { ...sealed, sealedEnv: [...fields.slice(0, 4), body.toString('base64'), fields[5]].join(':') };
  assert.throws(() => secrets.openSpec(changed, '/x/state.json'), code('sealed_corrupt', /\/x\/state\.json: the env of instance ins_a cannot be opened/));
  assert.throws(() => secrets.openSpec({ ...sealed, sealedEnv: { API_TOKEN: SECRET } }, '/x/state.json'), code('sealed_corrupt', /is not sealed data/));
  // a damaged key file is an error, not a reason to make a new key
  writeFileSync(keyPath, 'garbage');
  assert.throws(() => NodeSecrets.beside(join(dir, 'state.json')).sealSpec(spec), code('invalid_config', /secrets\.key is not a usable key/));
  assert.equal(readFileSync(keyPath, 'utf8'), 'garbage');
});
