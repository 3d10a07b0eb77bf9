import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EnjinError } from '../core/errors.ts';
import { loadMasterKey, MASTER_KEY_FILE } from './config-cipher.ts';

const root = mkdtempSync(join(tmpdir(), 'enjin-cipher-'));
test.after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(root, `d${++n}`);

const code = (c: string, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof EnjinError, String(e));
  assert.equal(e.code, c, e.message);
  if (message) assert.match(e.message, message);
  return true;
};

test('seals any JSON value and opens it again; each seal has a fresh IV and names its key', () => {
  const k = loadMasterKey({ env: { ENJIN_MASTER_KEY: randomBytes(32).toString('base64') } });
  for (const value of ['s3cret', { DATABASE_URL: 'postgres://u:p@h/d', EMPTY: '', 'ünï': '☃ \n"' }, [1, 2], null, 42, true]) {
    const sealed = k.seal(value);
    assert.match(sealed, new RegExp(`^enjin-sealed:v1:${k.keyId}:[A-Za-z0-9+/]{16}:[A-Za-z0-9+/=]*:[A-Za-z0-9+/]{22}==$`));
    assert.deepEqual(k.unseal(sealed), value);
  }
  const a = k.seal('same');
  const b = k.seal('same');
  assert.notEqual(a, b, 'a fresh IV every time');
  assert.notEqual(a.split(':')[3], b.split(':')[3]);
  assert.ok(!a.includes('same') && !Buffer.from(a.split(':')[4]!, 'base64').toString().includes('same'));
  assert.throws(() => k.seal(undefined), code('internal'));
});

test('ENJIN_MASTER_KEY is taken as base64 (standard or URL-safe) or hex, and the key id is the same for one key', () => {
  const key = randomBytes(32);
  const b64 = loadMasterKey({ env: { ENJIN_MASTER_KEY: key.toString('base64') } });
  const hex = loadMasterKey({ env: { ENJIN_MASTER_KEY: key.toString('hex').toUpperCase() } });
  const url = loadMasterKey({ env: { ENJIN_MASTER_KEY: `  ${key.toString('base64url')}\n` } });
  assert.match(b64.keyId, /^[0-9a-f]{16}$/);
  assert.equal(hex.keyId, b64.keyId);
  assert.equal(url.keyId, b64.keyId);
  assert.equal(b64.source, 'ENJIN_MASTER_KEY');
  assert.deepEqual(hex.unseal(b64.seal({ a: 1 })), { a: 1 });
  // the environment wins over the data directory, which is then left alone
  const dir = freshDir();
  assert.equal(loadMasterKey({ dataDir: dir, env: { ENJIN_MASTER_KEY: key.toString('hex') } }).keyId, b64.keyId);
  assert.throws(() => statSync(join(dir, MASTER_KEY_FILE)), /ENOENT/);
});

test('a malformed ENJIN_MASTER_KEY is refused with what a key is, never echoed', () => {
  const cases: Array<[string, RegExp]> = [
    [randomBytes(16).toString('base64'), /decodes to 16 bytes/],
    [randomBytes(33).toString('base64'), /decodes to 33 bytes/],
    [randomBytes(31).toString('hex'), /decodes to 46 bytes/],
    ['correct horse battery staple!', /neither 64 hex digits nor base64/],
    ['', /it is empty/],
    ['   ', /it is empty/],
  ];
  for (const [value, why] of cases) {
    assert.throws(() => loadMasterKey({ dataDir: freshDir(), env: { ENJIN_MASTER_KEY: value } }), (e: unknown) => {
      code('invalid_config', /ENJIN_MASTER_KEY is not a usable key/)(e);
      assert.match((e as Error).message, why);
      assert.match((e as Error).message, /openssl rand -base64 32/);
      if (value.trim()) assert.ok(!(e as Error).message.includes(value.trim()), 'the value is not in the message');
      return true;
    });
  }
});

test('without ENJIN_MASTER_KEY the key is made in DATA/master.key (0600, base64) on first use and kept after', () => {
  const dir = freshDir();
  const first = loadMasterKey({ dataDir: dir, env: {} });
  assert.equal(first.created, true);
  const path = join(dir, MASTER_KEY_FILE);
  assert.equal(first.source, path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const text = readFileSync(path, 'utf8');
  assert.match(text, /^[A-Za-z0-9+/]{43}=\n$/);
  const sealed = first.seal({ TOKEN: 'abc' });
  const second = loadMasterKey({ dataDir: dir, env: {} });
  assert.equal(second.created, false);
  assert.equal(second.keyId, first.keyId);
  assert.deepEqual(second.unseal(sealed), { TOKEN: 'abc' });
  assert.equal(readFileSync(path, 'utf8'), text, 'never rewritten');
  // the file's text works as ENJIN_MASTER_KEY on another controller
  assert.equal(loadMasterKey({ env: { ENJIN_MASTER_KEY: text } }).keyId, first.keyId);
  assert.deepEqual(readdirSync(dir), [MASTER_KEY_FILE], 'no temporary file left behind');
});

test('controllers starting at once on one data directory all end with the same key', async () => {
  const dir = freshDir();
  const gate = freshDir();
  mkdirSync(gate);
  // Each starter says it is ready, then waits for the go: all of them race for the key file at the same moment.
  const script = `const { loadMasterKey } = await import(${JSON.stringify(new URL('./config-cipher.ts', import.meta.url).href)});
const { existsSync, writeFileSync } = await import('node:fs');
const [dir, gate] = process.argv.slice(1);
writeFileSync(gate + '/ready-' + process.pid, '');
while (!existsSync(gate + '/go')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
const k = loadMasterKey({ dataDir: dir, env: {} });
process.stdout.write(JSON.stringify({ keyId: k.keyId, created: k.created }));`;
  const run = promisify(execFile);
  const starters = Array.from({ length: 6 }, () => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir, gate], { timeout: 300_000 }));
  while (readdirSync(gate).length < starters.length) await new Promise((r) => setTimeout(r, 20));
  writeFileSync(join(gate, 'go'), '');
  const answers = (await Promise.all(starters)).map((r) => JSON.parse(r.stdout) as { keyId: string; created: boolean });
  assert.equal(new Set(answers.map((a) => a.keyId)).size, 1, JSON.stringify(answers));
  assert.equal(answers.filter((a) => a.created).length, 1, 'exactly one made it');
  assert.equal(loadMasterKey({ dataDir: dir, env: {} }).keyId, answers[0]!.keyId);
  assert.deepEqual(readdirSync(dir), [MASTER_KEY_FILE], 'no temporary file left behind');
});

test('a key file is read as base64, hex or 32 raw bytes; a bad one is refused with its name', () => {
  const key = randomBytes(32);
  const expected = loadMasterKey({ env: { ENJIN_MASTER_KEY: key.toString('hex') } }).keyId;
  for (const [name, body] of [['b64', `${key.toString('base64')}\n`], ['hex', key.toString('hex')], ['raw', key]] as const) {
    const file = join(root, `key-${name}`);
    writeFileSync(file, body, { mode: 0o600 });
    // --master-key-file wins over ENJIN_MASTER_KEY
    const k = loadMasterKey({ keyFile: file, env: { ENJIN_MASTER_KEY: randomBytes(32).toString('hex') } });
    assert.equal(k.keyId, expected, name);
    assert.equal(k.source, file);
  }
  const short = join(root, 'key-short');
  writeFileSync(short, randomBytes(20).toString('base64'));
  assert.throws(() => loadMasterKey({ keyFile: short }), code('invalid_config', /the master key file --master-key-file .*key-short is not a usable key: it decodes to 20 bytes/));
  assert.throws(() => loadMasterKey({ keyFile: join(root, 'nope') }), code('invalid_config', /--master-key-file .*nope cannot be read \(ENOENT/));
  // a damaged DATA/master.key is an error, never replaced by a new key
  const dir = freshDir();
  loadMasterKey({ dataDir: dir, env: {} });
  writeFileSync(join(dir, MASTER_KEY_FILE), 'truncat');
  assert.throws(() => loadMasterKey({ dataDir: dir, env: {} }), code('invalid_config', /master\.key is not a usable key/));
  assert.equal(readFileSync(join(dir, MASTER_KEY_FILE), 'utf8'), 'truncat');
});

test('a cluster controller (shared store) never makes a key of its own', () => {
  const dir = freshDir();
  assert.throws(() => loadMasterKey({ dataDir: dir, env: {}, shared: true }), code('invalid_config', /set ENJIN_MASTER_KEY \(the same on every controller.*--master-key-file FILE.*copy master\.key/));
  assert.throws(() => statSync(join(dir, MASTER_KEY_FILE)), /ENOENT/);
  // a key given in the environment, or a master.key copied from the first controller, is used
  const first = loadMasterKey({ dataDir: freshDir(), env: {} });
  const text = readFileSync(first.source, 'utf8');
  assert.equal(loadMasterKey({ dataDir: dir, env: { ENJIN_MASTER_KEY: text }, shared: true }).keyId, first.keyId);
  mkdirSync(dir);
  writeFileSync(join(dir, MASTER_KEY_FILE), text, { mode: 0o600 });
  const copied = loadMasterKey({ dataDir: dir, env: {}, shared: true });
  assert.equal(copied.keyId, first.keyId);
  assert.equal(copied.created, false);
  assert.throws(() => loadMasterKey({ env: {} }), code('invalid_config', /no master key/));
});

test('data sealed under another key is master_key_mismatch, naming both keys and what to do', () => {
  const ours = loadMasterKey({ env: { ENJIN_MASTER_KEY: randomBytes(32).toString('base64') } });
  const theirs = loadMasterKey({ env: { ENJIN_MASTER_KEY: randomBytes(32).toString('base64') } });
  const sealed = theirs.seal('x');
  assert.throws(() => ours.unseal(sealed), (e: unknown) => {
    code('master_key_mismatch')(e);
    const m = (e as Error).message;
    assert.ok(m.includes(`sealed under master key ${theirs.keyId}`), m);
    assert.ok(m.includes(`this controller has master key ${ours.keyId}`), m);
    assert.match(m, /set ENJIN_MASTER_KEY to the same value on every controller of the cluster, or restore the data directory's master\.key/);
    return true;
  });
  assert.throws(() => ours.assertSameKey(theirs.keyId), code('master_key_mismatch'));
  ours.assertSameKey(ours.keyId);
  // relabelled to claim our key: the key id is authenticated, so it does not open
  assert.throws(() => ours.unseal(sealed.replace(theirs.keyId, ours.keyId)), code('sealed_corrupt', /authentication tag/));
});

test('changed or damaged data is sealed_corrupt, whichever part was touched', () => {
  const k = loadMasterKey({ env: { ENJIN_MASTER_KEY: randomBytes(32).toString('hex') } });
  const sealed = k.seal({ SECRET: 'value' });
  const fields = sealed.split(':');
  const flip = (i: number) => {
    const bytes = Buffer.from(fields[i]!, 'base64');
    bytes[0]! ^= 1;
    return [...fields.slice(0, i), bytes.toString('base64'), ...fields.slice(i + 1)].join(':');
  };
  for (const [what, bad, why] of [
    ['iv', flip(3), /authentication tag/],
    ['ciphertext', flip(4), /authentication tag/],
    ['tag', flip(5), /authentication tag/],
    ['truncated', sealed.slice(0, -6), /IV or tag has the wrong length|not base64/],
    ['a field missing', fields.slice(0, 5).join(':'), /fields after the prefix/],
    ['plain text', '{"SECRET":"value"}', /does not start with enjin-sealed:v1:/],
    ['a newer format', sealed.replace(':v1:', ':v2:'), /newer format/],
    ['a bad key id', sealed.replace(k.keyId, 'zz'), /key id/],
  ] as const) {
    assert.throws(() => k.unseal(bad), code('sealed_corrupt', why), what);
  }
});
