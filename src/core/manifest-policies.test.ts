// Tests for the policy stanzas of enjin.yaml: health (kinds and timing), restart, update and drain, with their
// defaults, bounds and the line and column of every problem.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EnjinError, type ErrorDetail } from './errors.ts';
import { parseManifest } from './manifest.ts';
import type { ServiceSpec } from './model.ts';

function problemsOf(text: string): ErrorDetail[] {
  try {
    parseManifest(text);
  } catch (err) {
    assert.ok(err instanceof EnjinError, `expected EnjinError, got ${String(err)}`);
    assert.equal(err.code, 'manifest_invalid');
    return err.details;
  }
  assert.fail('expected manifest_invalid');
}

/** "line:column message" lines, the way a user reads them. */
function problems(text: string): string[] {
  return problemsOf(text).map((d) => `${d.line}:${d.column} ${d.message}`);
}

/** One service `s` with the given lines (indented under it). */
function one(...lines: string[]): string {
  return `project: a\nservices:\n  s:\n    command: ./run\n${lines.map((l) => `    ${l}\n`).join('')}`;
}

function service(...lines: string[]): ServiceSpec {
  return parseManifest(one(...lines)).services.s;
}

const HEALTH_TIMING_DEFAULTS = { startTimeout: 60, interval: 10, timeout: 2, retries: 3, grace: 0 };

describe('health:', () => {
  it('reads an http check with every field, durations as strings or seconds', () => {
    const s = service('health:', '  http: /ready', '  expect: "ok"', '  host: app.example.com:8080', '  interval: 30s', '  timeout: 1500ms', '  retries: 5', '  grace: 1m', '  start_timeout: 120');
    assert.deepEqual(s.health, { http: '/ready', expect: 'ok', host: 'app.example.com:8080', startTimeout: 120, interval: 30, timeout: 1.5, retries: 5, grace: 60 });
    assert.equal(s.listens, true);
    assert.deepEqual(service('health: { http: /x, interval: 20, timeout: 0.5 }').health, { http: '/x', ...HEALTH_TIMING_DEFAULTS, interval: 20, timeout: 0.5 });
  });

  it('fills every default for a check as it was written before timing existed', () => {
    assert.deepEqual(service('health: { http: /healthz }').health, { http: '/healthz', ...HEALTH_TIMING_DEFAULTS });
  });

  it('reads a tcp check, which listens, and a command check, which does not', () => {
    const tcp = service('health: { tcp: true }');
    assert.deepEqual(tcp.health, { tcp: true, ...HEALTH_TIMING_DEFAULTS });
    assert.equal(tcp.listens, true);
    const command = service('health: { command: "  ./check.sh --quick " }');
    assert.deepEqual(command.health, { command: './check.sh --quick', ...HEALTH_TIMING_DEFAULTS });
    assert.equal(command.listens, false, 'a worker can have a command check');
    assert.equal(service('port: false', 'health: { command: ./check.sh }').listens, false, 'port: false goes with a command check');
    assert.equal(service('health:').health, null, 'an empty health is no check');
  });

  it('shortens the default timeout to a short interval rather than refusing it', () => {
    assert.deepEqual(service('health: { http: /, interval: 1s }').health, { http: '/', ...HEALTH_TIMING_DEFAULTS, interval: 1, timeout: 1 });
  });

  it('reports every rule with its line and column', () => {
    assert.deepEqual(problems(one(
      'health:',
      '  http: /x',
      '  tcp: true',
      '  command: ./c',
      '  interval: 500ms',
      '  timeout: 0s',
      '  retries: 0',
      '  grace: 2h',
      '  intervall: 5s',
    )), [
      '7:7 services.s.health.tcp: cannot be given with http (line 6); a service has one check: http, tcp or command',
      '8:7 services.s.health.command: cannot be given with http (line 6); a service has one check: http, tcp or command',
      '9:17 services.s.health.interval: must be at least 1s and at most 1h (got "500ms")',
      '10:16 services.s.health.timeout: must be more than 0s and at most 1h (got "0s")',
      '11:16 services.s.health.retries: must be a whole number from 1 to 100 (got 0)',
      '12:14 services.s.health.grace: must be at least 0s and at most 1h (got "2h")',
      '13:7 services.s.health.intervall: unknown key (did you mean "interval"?); allowed here: http, tcp, command, expect, host, interval, timeout, retries, grace, start_timeout',
    ]);
    assert.deepEqual(problems(one('health: { tcp: false, expect: ok, host: "a b", retries: 101, interval: soon }')), [
      '5:20 services.s.health.tcp: must be true: the service is healthy while $PORT accepts connections; remove health for no check (got false)',
      '5:27 services.s.health.expect: only applies to an http check; add "http: /path" or remove expect',
      '5:39 services.s.health.host: only applies to an http check; add "http: /path" or remove host',
      '5:61 services.s.health.retries: must be a whole number from 1 to 100 (got 101)',
      '5:76 services.s.health.interval: must be a duration such as 10s, 500ms or 5m, or a number of seconds (got "soon")',
    ]);
    assert.deepEqual(problems(one('health: { http: /, interval: 5s, timeout: 6s, host: "http://x", expect: "" }')), [
      '5:47 services.s.health.timeout: must not exceed the interval between probes (5s); shorten the timeout or lengthen the interval (got "6s")',
      '5:57 services.s.health.host: must be the Host header to send, a hostname with an optional :port, e.g. app.example.com (got "http://x")',
      '5:77 services.s.health.expect: must be the text the response body must contain, e.g. "ok" (got "")',
    ]);
    assert.deepEqual(problems(one('health: { command: "" }')), [
      '5:24 services.s.health.command: must be a non-empty shell command, healthy when it exits 0, e.g. "command: ./check.sh" (got "")',
    ]);
    assert.deepEqual(problems(one('health: /healthz')), [
      '5:13 services.s.health: must be a map, e.g. { http: /healthz } (got "/healthz")',
    ]);
  });

  it('still refuses port: false with an http or tcp check', () => {
    assert.deepEqual(problems(one('port: false', 'health: { tcp: true }')), [
      '5:11 services.s.port: is false, but the service has an http or tcp health check (line 6), which need it to listen on $PORT; remove "port: false" or those settings',
    ]);
  });
});

describe('restart:', () => {
  it('defaults to always for a service that listens and on-failure otherwise, written for every service', () => {
    const m = parseManifest('project: a\nservices:\n  web: { command: x }\n  worker: { command: y }\n');
    assert.deepEqual(m.services.web.restart, { policy: 'always', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } });
    assert.deepEqual(m.services.worker.restart, { policy: 'on-failure', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } });
    assert.deepEqual(service('restart:').restart, m.services.worker.restart, 'an empty restart is the default');
  });

  it('reads a full policy, a partial one and the policy alone', () => {
    assert.deepEqual(service('restart: { policy: always, max_attempts: 0, window: 1m30s, backoff: { initial: 500ms, max: 10s } }').restart,
      { policy: 'always', maxAttempts: 0, window: 90, backoff: { initial: 0.5, max: 10 } });
    assert.deepEqual(service('restart: { backoff: { max: 2m } }').restart, { policy: 'on-failure', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 120 } });
    assert.deepEqual(service('restart: never').restart, { policy: 'never', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } });
  });

  it('reports every rule with its line and column', () => {
    assert.deepEqual(problems(one(
      'restart:',
      '  policy: sometimes',
      '  max_attempts: 1001',
      '  window: 0.5s',
      '  backoff: { initial: 50ms, max: 2h, jitter: 1 }',
      '  max_retries: 3',
    )), [
      '6:15 services.s.restart.policy: must be one of always, on-failure, never (got "sometimes")',
      '7:21 services.s.restart.max_attempts: must be a whole number from 0 to 1000 (got 1001)',
      '8:15 services.s.restart.window: must be at least 1s and at most 1d (got "0.5s")',
      '9:27 services.s.restart.backoff.initial: must be at least 100ms and at most 1h (got "50ms")',
      '9:38 services.s.restart.backoff.max: must be at least 100ms and at most 1h (got "2h")',
      '9:42 services.s.restart.backoff.jitter: unknown key; allowed here: initial, max',
      '10:7 services.s.restart.max_retries: unknown key (did you mean "max_attempts"?); allowed here: policy, max_attempts, window, backoff',
    ]);
    assert.deepEqual(problems(one('restart: { backoff: { initial: 2m } }')), [
      '5:36 services.s.restart.backoff.initial: the longest wait (max 1m) must not be shorter than the first (initial 2m)',
    ]);
    assert.deepEqual(problems(one('restart: on_failure')), ['5:14 services.s.restart: must be one of always, on-failure, never (got "on_failure")']);
    assert.deepEqual(problems(one('restart: 3')), ['5:14 services.s.restart: must be a map, e.g. { policy: on-failure, max_attempts: 5, window: 5m } (got 3)']);
  });
});

describe('update:', () => {
  it('is written only when given, with every part defaulted', () => {
    assert.equal(service().update, undefined, 'absent: the default rollout');
    assert.deepEqual(service('update: { parallelism: 1 }').update,
      { parallelism: 1, canary: 0, minHealthyTime: 0, healthyDeadline: 300, autoRollback: true, maxSurge: 0 });
    assert.deepEqual(service('update: { parallelism: 2, canary: 1, min_healthy_time: 10s, healthy_deadline: 5m, auto_rollback: false, max_surge: 1 }').update,
      { parallelism: 2, canary: 1, minHealthyTime: 10, healthyDeadline: 300, autoRollback: false, maxSurge: 1 });
  });

  it('reports every rule with its line and column', () => {
    assert.deepEqual(problems(one(
      'update:',
      '  parallelism: -1',
      '  canary: 101',
      '  max_surge: 1.5',
      '  min_healthy_time: 2h',
      '  healthy_deadline: 0s',
      '  auto_rollback: yes',
      '  batch_size: 2',
    )), [
      '6:20 services.s.update.parallelism: must be a whole number of instances from 0 to 100 (got -1)',
      '7:15 services.s.update.canary: must be a whole number of instances from 0 to 100 (got 101)',
      '8:18 services.s.update.max_surge: must be a whole number of instances from 0 to 100 (got 1.5)',
      '9:25 services.s.update.min_healthy_time: must be at least 0s and at most 1h (got "2h")',
      '10:25 services.s.update.healthy_deadline: must be at least 1s and at most 1d (got "0s")',
      '11:22 services.s.update.auto_rollback: must be true or false: whether a failed rollout puts the previous release back (got "yes")',
      '12:7 services.s.update.batch_size: unknown key (did you mean "parallelism"?); allowed here: parallelism, canary, min_healthy_time, healthy_deadline, auto_rollback, max_surge',
    ]);
    assert.deepEqual(problems(one('update: { min_healthy_time: 1m, healthy_deadline: 60s }')), [
      '5:55 services.s.update.healthy_deadline: healthy_deadline (1m) must be longer than min_healthy_time (1m): an instance needs time to start before it can stay healthy that long',
    ]);
    assert.deepEqual(problems(one('update: { min_healthy_time: 10m }')).length, 1, 'the default deadline of 5m is too short for it');
    assert.deepEqual(problems(one('update: [1]')), ['5:13 services.s.update: must be a map, e.g. { parallelism: 1, min_healthy_time: 10s, healthy_deadline: 5m } (got a list)']);
  });
});

describe('drain:', () => {
  it('is written only when given, in seconds', () => {
    assert.equal(service().drain, undefined);
    assert.equal(service('drain: 10s').drain, 10);
    assert.equal(service('drain: 0').drain, 0);
    assert.equal(service('drain: 1m').drain, 60);
  });

  it('reports bad values with their line and column', () => {
    assert.deepEqual(problems(one('drain: 2h')), ['5:12 services.s.drain: must be at least 0s and at most 1h (got "2h")']);
    assert.deepEqual(problems(one('drain: soon')), ['5:12 services.s.drain: must be a duration such as 10s, 500ms or 5m, or a number of seconds (got "soon")']);
    assert.deepEqual(problems(one('drain:')), ['5:5 services.s.drain: must be a duration such as 10s, 500ms or 5m, or a number of seconds (got nothing)']);
    assert.match(problems(one('drian: 5s'))[0], /^5:5 services.s.drian: unknown key \(did you mean "drain"\?\)/);
  });
});

describe('a manifest without the new stanzas', () => {
  it('validates to the same spec as before, plus restart and the health timing defaults', () => {
    const m = parseManifest('project: a\nservices:\n  web:\n    command: x\n    instances: 2\n    health: { http: /h, start_timeout: 30 }\n    stop_timeout: 5\n');
    assert.deepEqual(m.services.web, {
      name: 'web', command: 'x', instances: 2, listens: true, hostnames: [], env: {}, stopTimeout: 5,
      health: { http: '/h', startTimeout: 30, interval: 10, timeout: 2, retries: 3, grace: 0 },
      restart: { policy: 'always', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } },
    });
  });
});
