// Tests for enjin.yaml and Procfile parsing: defaults, every rule, and positions of the problems reported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EnjinError, type ErrorDetail } from './errors.ts';
import { hostnameProblem } from './hostnames.ts';
import { manifestHostnames, parseManifest } from './manifest.ts';
import { parseProcfile } from './procfile.ts';

function problemsOf(fn: () => unknown): ErrorDetail[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EnjinError, `expected EnjinError, got ${String(err)}`);
    assert.equal(err.code, 'manifest_invalid');
    assert.equal(err.status, 422);
    return err.details;
  }
  assert.fail('expected manifest_invalid');
}

/** "line:column message" lines, the way a user reads them. */
function problems(text: string): string[] {
  return problemsOf(() => parseManifest(text)).map((d) => `${d.line}:${d.column} ${d.message}`);
}

function hasProblem(text: string, pattern: RegExp): ErrorDetail {
  const details = problemsOf(() => parseManifest(text));
  const found = details.find((d) => pattern.test(d.message));
  assert.ok(found, `no problem matching ${pattern} in:\n${details.map((d) => d.message).join('\n')}`);
  return found;
}

const EXAMPLE = `project: hello
prepare:            # run once per version, in the unpacked directory
  - npm ci --omit=dev
env:
  GREETING: hi
services:
  web:
    command: node server.js       # gets PORT; must listen on it
    instances: 2
    hostnames: [hello.localhost, "*.hello.localhost"]
    health: { http: /healthz }    # optional
  worker:
    command: node worker.js       # no port, no hostnames
`;

describe('parseManifest', () => {
  it('parses the documented example with defaults', () => {
    const m = parseManifest(EXAMPLE);
    assert.deepEqual(m, {
      project: 'hello',
      prepare: ['npm ci --omit=dev'],
      env: { GREETING: 'hi' },
      services: {
        web: {
          name: 'web',
          command: 'node server.js',
          instances: 2,
          listens: true,
          hostnames: ['hello.localhost', '*.hello.localhost'],
          health: { http: '/healthz', startTimeout: 60, interval: 10, timeout: 2, retries: 3, grace: 0 },
          env: {},
          stopTimeout: 10,
          restart: { policy: 'always', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } },
        },
        worker: {
          name: 'worker',
          command: 'node worker.js',
          instances: 1,
          listens: false,
          hostnames: [],
          health: null,
          env: {},
          stopTimeout: 10,
          restart: { policy: 'on-failure', maxAttempts: 5, window: 300, backoff: { initial: 1, max: 60 } },
        },
      },
    });
    assert.deepEqual(manifestHostnames(m), ['hello.localhost', '*.hello.localhost']);
  });

  it('accepts prepare as a single string and keeps env spellings', () => {
    const m = parseManifest(`project: a
prepare: make build
env: { MODE: 0755, RATIO: 1.50, DEBUG: true, EMPTY: "", NAME: x }
services:
  api:
    command: ./api
    env: { LEVEL: 3 }
    stop_timeout: 0
    health: { start_timeout: 600 }
`);
    assert.deepEqual(m.prepare, ['make build']);
    assert.deepEqual(m.env, { MODE: '0755', RATIO: '1.50', DEBUG: 'true', EMPTY: '', NAME: 'x' });
    const api = m.services.api;
    assert.deepEqual(api.env, { LEVEL: '3' });
    assert.equal(api.stopTimeout, 0);
    // A check of no kind meant "ready once the port accepts", which is the tcp check.
    assert.deepEqual(api.health, { tcp: true, startTimeout: 600, interval: 10, timeout: 2, retries: 3, grace: 0 });
    assert.equal(api.listens, true, 'a health check implies listening');
  });

  it('decides listens from port, hostnames, health and the name web', () => {
    const m = parseManifest(`project: a
services:
  web: { command: x }
  web2: { command: x }
  routed: { command: x, hostnames: [a.example.com] }
  quiet-web: { command: x, port: false }
  web-ish: { command: x, port: true }
`);
    assert.equal(m.services.web.listens, true);
    assert.equal(m.services.web2.listens, false);
    assert.equal(m.services.routed.listens, true);
    assert.equal(m.services['quiet-web'].listens, false);
    assert.equal(m.services['web-ish'].listens, true);
    const web = parseManifest('project: a\nservices:\n  web: { command: x, port: false }\n').services.web;
    assert.equal(web.listens, false);
  });

  it('lower-cases hostnames and follows aliases', () => {
    const m = parseManifest(`project: a
env: &shared { X: "1" }
services:
  web:
    command: x
    hostnames: [App.Example.COM]
    env: *shared
`);
    assert.deepEqual(m.services.web.hostnames, ['app.example.com']);
    assert.deepEqual(m.services.web.env, { X: '1' });
  });

  it('reports the example problem with its position', () => {
    const d = hasProblem('project: hello\nservices:\n  web:\n    command: x\n    instances: two\n', /instances/);
    assert.equal(d.message, 'services.web.instances: must be a whole number from 0 to 100 (got "two")');
    assert.equal(d.path, 'services.web.instances');
    assert.equal(d.file, 'enjin.yaml');
    assert.equal(d.line, 5);
    assert.equal(d.column, 16);
  });

  it('collects all problems at once, sorted by position', () => {
    const out = problems(`project: Hello
env:
  PORT: "80"
  1BAD: x
services:
  web:
    command: ""
    instances: 101
    hostnames: ["http://a.com", "a..b", "*.com"]
    health: { http: healthz, start_timeout: 0 }
    stop_timeout: 301
    colour: blue
  bad_name:
    command: y
`);
    assert.deepEqual(out, [
      '1:10 project: must be a name: lower-case letters, digits and dashes, starting with a letter, not ending with a dash, at most 40 characters (got "Hello")',
      '3:3 env.PORT: is set by enjin for every instance that listens; remove it',
      '4:3 env.1BAD: is not a valid variable name: use letters, digits and underscores, not starting with a digit',
      '7:14 services.web.command: must be a non-empty shell command (got "")',
      '8:16 services.web.instances: must be a whole number from 0 to 100 (got 101)',
      '9:17 services.web.hostnames[0]: must be a bare hostname, without a scheme such as http:// (got "http://a.com")',
      '9:33 services.web.hostnames[1]: must not contain empty labels (two dots in a row) (got "a..b")',
      '9:41 services.web.hostnames[2]: a wildcard needs at least two labels after "*.", as in *.example.com (got "*.com")',
      '10:21 services.web.health.http: must be a URL path starting with "/", without spaces, e.g. /healthz (got "healthz")',
      '10:45 services.web.health.start_timeout: must be a whole number of seconds from 1 to 600 (got 0)',
      '11:19 services.web.stop_timeout: must be a whole number of seconds from 0 to 300 (got 301)',
      '12:5 services.web.colour: unknown key; allowed here: command, instances, hostnames, health, port, env, stop_timeout, timeouts, volumes, restart, update, drain',
      '13:3 services.bad_name: is not a valid service name: lower-case letters, digits and dashes, starting with a letter, not ending with a dash, at most 40 characters',
    ]);
  });

  it('requires project and services', () => {
    const out = problems('prepare: []\n');
    assert.equal(out.length, 2);
    assert.match(out[0], /^1:1 project: is required/);
    assert.match(out[1], /^1:1 services: is required/);
    assert.match(problems('project: a\nservices: {}\n')[0], /^2:11 services: must list at least one service/);
    assert.match(problems('project: a\nservices:\n')[0], /^2:1 services: must be a map of service names .*\(got nothing\)/);
    assert.match(problems('')[0], /^1:1 the file must be a map .*\(got nothing\)/);
    assert.match(problems('- a\n- b\n')[0], /^1:1 the file must be a map .*\(got a list\)/);
  });

  it('suggests near misses and synonyms for unknown keys', () => {
    assert.match(hasProblem('project: a\nservice:\n  web: { command: x }\n', /^service:/).message, /did you mean "services"\?.*allowed here: project, prepare, build, release, env, services/);
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, hostname: [a.b.c] }\n', /hostname:/).message, /did you mean "hostnames"/);
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, replicas: 2 }\n', /replicas/).message, /did you mean "instances"/);
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, stopTimeout: 2 }\n', /stopTimeout/).message, /did you mean "stop_timeout"/);
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, health: { port: true } }\n', /health.port/).message, /did you mean "tcp"\?\); allowed here: http, tcp, command, expect, host, interval, timeout, retries, grace, start_timeout$/);
    assert.doesNotMatch(hasProblem('project: a\nservices:\n  web: { command: x, zzz: 1 }\n', /zzz/).message, /did you mean/);
  });

  it('rejects a command and a port YAML typed as something else, with a hint', () => {
    assert.match(hasProblem('project: a\nservices:\n  web: { command: true }\n', /command/).message, /YAML reads it as a boolean, so quote it: "true"/);
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, port: 8080 }\n', /port/).message, /must be true or false.*passes it in \$PORT/);
    assert.match(hasProblem('project: a\nservices:\n  web: node server.js\n', /services.web/).message, /must be a map with at least a command/);
    assert.match(hasProblem('project: a\nservices:\n  web: { instances: 1 }\n', /command/).message, /services.web: needs a command/);
  });

  it('reads per-service router timeouts in seconds, defaulting the keys left out, with line and column errors', () => {
    const m = parseManifest('project: a\nservices:\n  web: { command: x, timeouts: { header: 5 } }\n  api: { command: y }\n');
    assert.deepEqual(m.services.web.timeouts, { connect: 5, header: 5, idle: 300 });
    assert.equal(m.services.api.timeouts, undefined, 'absent: the router uses its defaults');
    assert.deepEqual(
      problems('project: a\nservices:\n  web:\n    command: x\n    timeouts: { connect: 0, header: 2h, idle: 86401, read: 3 }\n'),
      [
        '5:26 services.web.timeouts.connect: must be a whole number of seconds from 1 to 60 (got 0)',
        '5:37 services.web.timeouts.header: must be a whole number of seconds from 1 to 3600 (got "2h")',
        '5:47 services.web.timeouts.idle: must be a whole number of seconds from 1 to 86400 (got 86401)',
        '5:54 services.web.timeouts.read: unknown key; allowed here: connect, header, idle',
      ],
    );
    assert.match(hasProblem('project: a\nservices:\n  web: { command: x, timeouts: 30 }\n', /timeouts/).message, /must be a map of seconds/);
  });

  it('refuses port: false together with hostnames or health', () => {
    const d = hasProblem('project: a\nservices:\n  w:\n    command: x\n    port: false\n    hostnames: [a.example.com]\n    health: { http: / }\n', /port/);
    assert.equal(d.line, 5);
    assert.match(d.message, /is false, but the service has hostnames \(line 6\) and an http or tcp health check \(line 7\)/);
  });

  it('refuses a hostname used twice, naming the first use', () => {
    const d = hasProblem('project: a\nservices:\n  web: { command: x, hostnames: [a.example.com] }\n  api: { command: x, hostnames: [A.example.com] }\n', /already/);
    assert.equal(d.path, 'services.api.hostnames[0]');
    assert.equal(d.line, 4);
    assert.match(d.message, /"a.example.com" is already used by services.web.hostnames\[0\] \(line 3\)/);
  });

  it('reports YAML syntax errors and duplicate keys with line and column', () => {
    const [syntax] = problems('project: a\nservices: [1,\n');
    assert.match(syntax, /^\d+:\d+ YAML syntax: /);
    const dup = problemsOf(() => parseManifest('project: a\nproject: b\nservices: {}\n'));
    assert.equal(dup.length, 1, 'only syntax problems are reported for a broken document');
    assert.deepEqual([dup[0].line, dup[0].column], [2, 1]);
    assert.match(dup[0].message, /appears twice/);
    assert.match(problems('project: a\n---\nproject: b\n')[0], /single YAML document/);
  });

  it('names the file it was given', () => {
    const [d] = problemsOf(() => parseManifest('project: A\nservices: { web: { command: x } }\n', 'app/enjin.yaml'));
    assert.equal(d.file, 'app/enjin.yaml');
    try {
      parseManifest('project: A\nservices: { web: { command: x } }\n', 'app/enjin.yaml');
    } catch (err) {
      assert.equal((err as Error).message, 'app/enjin.yaml has 1 problem; fix it and deploy again');
    }
  });

  it('rejects env values that are not scalars and aliases to nothing', () => {
    assert.match(hasProblem('project: a\nenv: { A: [1] }\nservices: { web: { command: x } }\n', /env.A/).message, /must be a string, number or boolean.*got a list/);
    assert.match(hasProblem('project: a\nenv: { A: }\nservices: { web: { command: x } }\n', /env.A/).message, /write "" for an empty value/);
    assert.match(hasProblem('project: a\nenv: *nothing\nservices: { web: { command: x } }\n', /alias/).message, /\*nothing refers to no anchor/);
  });
});

describe('parseManifest: hostile keys and characters', () => {
  it('refuses prototype keys as service and variable names, with their position', () => {
    const d = hasProblem('project: a\nservices:\n  constructor:\n    command: x\n', /services.constructor/);
    assert.deepEqual([d.line, d.column], [3, 3]);
    assert.match(d.message, /reserved word/);
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const e = hasProblem(`project: a\nenv:\n  ${key}: x\nservices: { web: { command: x } }\n`, new RegExp(`env.${key}`));
      assert.equal(e.line, 3);
    }
    assert.match(hasProblem('project: a\nservices: { web: { command: x, env: { constructor: y } } }\n', /services.web.env.constructor/).message, /reserved word/);
  });
  it('refuses a NUL character anywhere, which the store could not keep', () => {
    const d = hasProblem('project: a\nenv: { A: "x\\0y" }\nservices: { web: { command: x } }\n', /NUL/);
    assert.equal(d.line, 2);
    hasProblem('project: a\nservices: { web: { command: "node \\0" } }\n', /NUL/);
    assert.throws(() => parseProcfile('web: node\0 x\n', 'a'), /invalid|problem/);
  });
});

describe('hostnameProblem', () => {
  it('accepts DNS names and two-label wildcards', () => {
    for (const h of ['app.localhost', 'a.example.com', 'xn--bcher-kva.example', '*.hello.localhost', 'a-b.c0', 'web.0x.example', '0x7f.example.com']) assert.equal(hostnameProblem(h), null, h);
  });
  it('rejects IP addresses in every notation, and bare localhost', () => {
    const ips = ['127.0.0.1', '2130706433', '0x7f000001', '0X7F000001'.toLowerCase(), '0177.0.0.1', '0x7f.0.0.1', '127.1', 'a.0x1', '[::1]', '::1', '::ffff:127.0.0.1', '[::ffff:7f00:1]', 'fe80::1'];
    for (const h of ips) assert.match(hostnameProblem(h) ?? '', /IP(v6)? address/, h);
    assert.match(hostnameProblem('localhost') ?? '', /app\.localhost/);
  });
  it('rejects the rest with a reason', () => {
    for (const h of ['', 'a.com:80', 'a.com/x', 'https://a.com', 'a.com.', '*.com', 'a.*.com', '**.a.com', '-a.com', 'a_b.com', 'bücher.de', '10.0.0.1', `${'a'.repeat(64)}.com`]) {
      assert.notEqual(hostnameProblem(h), null, h);
    }
  });
});

describe('parseProcfile', () => {
  it('reads one service per line, web listening', () => {
    const m = parseProcfile('\uFEFF# processes\nweb: node server.js --port $PORT\n\n  worker:   node worker.js  \r\n', 'shop');
    assert.deepEqual(m, {
      project: 'shop',
      prepare: [],
      env: {},
      services: {
        web: { name: 'web', command: 'node server.js --port $PORT', instances: 1, listens: true, hostnames: [], health: null, env: {}, stopTimeout: 10 },
        worker: { name: 'worker', command: 'node worker.js', instances: 1, listens: false, hostnames: [], health: null, env: {}, stopTimeout: 10 },
      },
    });
  });

  it('reports bad lines with line and column', () => {
    const details = problemsOf(() => parseProcfile('web: ok\njust words\nworker_1: x\nweb: again\n  clock:   \n', 'shop'));
    assert.deepEqual(
      details.map((d) => `${d.line}:${d.column} ${d.message}`),
      [
        '2:1 expected "name: command", e.g. "web: node server.js"',
        '3:1 "worker_1" is not a valid process name: lower-case letters, digits and dashes, starting with a letter, not ending with a dash, at most 40 characters (use dashes instead of underscores)',
        '4:1 "web" is already defined on line 1; each process name appears once',
        '5:9 "clock" has no command after the colon',
      ],
    );
    assert.equal(details[0].file, 'Procfile');
  });

  it('rejects an empty Procfile and a bad project name', () => {
    assert.match(problemsOf(() => parseProcfile('# nothing\n', 'shop'))[0].message, /lists no processes/);
    assert.match(problemsOf(() => parseProcfile('web: x\n', 'Shop'))[0].message, /not a valid project name/);
  });
});

describe('release phase', () => {
  it('a Procfile release line is the release command, not a process', () => {
    const m = parseProcfile('web: node server.js\nrelease: python manage.py migrate\n', 'shop');
    assert.deepEqual(Object.keys(m.services), ['web']);
    assert.equal(m.release, 'python manage.py migrate');
  });

  it('enjin.yaml release: is one command; anything else is refused at its line and column', () => {
    const m = parseManifest('project: shop\nrelease: ./migrate.sh\nservices:\n  web: { command: node server.js }\n');
    assert.equal(m.release, './migrate.sh');
    assert.equal(parseManifest('project: shop\nservices:\n  web: { command: node server.js }\n').release, undefined);
    assert.throws(() => parseManifest('project: shop\nrelease: [a, b]\nservices:\n  web: { command: node server.js }\n'), (err: EnjinError) => {
      const d = err.details.find((x: ErrorDetail) => x.path === 'release');
      return err.code === 'manifest_invalid' && d?.line === 2 && /must be one command/.test(d.message);
    });
  });
});

describe('volumes', () => {
  it('applies project-wide volumes to every service; a service adds to them and wins on a name', () => {
    const m = parseManifest(`project: shop
volumes: { data: /data }
services:
  web:
    command: node server.js
    volumes: { uploads: /srv/uploads/, data: /var/data }
  worker:
    command: node worker.js
`);
    assert.deepEqual(m.volumes, { data: '/data' });
    assert.deepEqual(m.services.web.volumes, { data: '/var/data', uploads: '/srv/uploads' });
    assert.deepEqual(m.services.worker.volumes, { data: '/data' });
  });

  it('leaves services without volumes as they were', () => {
    const m = parseManifest('project: a\nservices:\n  web: { command: x }\n');
    assert.equal('volumes' in m.services.web, false);
    assert.equal('volumes' in m, false);
  });

  it('reports bad names and paths with their line and column', () => {
    assert.deepEqual(problems(`project: a
volumes:
  Data: /data
  logs: relative/dir
services:
  web:
    command: x
    volumes:
      ok: /
      cache: [1]
      dots: /a/../b
`), [
      '3:3 volumes.Data: is not a valid volume name: lower-case letters, digits and dashes, starting and ending with a letter or digit, at most 63 characters',
      '4:9 volumes.logs: must be an absolute path, e.g. /data (got "relative/dir")',
      '9:11 services.web.volumes.ok: cannot be / itself; name a directory, e.g. /data (got "/")',
      '10:14 services.web.volumes.cache: must be the absolute path the volume is used at, e.g. /data (got a list)',
      '11:13 services.web.volumes.dots: must not contain . or .. segments (got "/a/../b")',
    ]);
    hasProblem('project: a\nvolumes: /data\nservices:\n  web: { command: x }\n', /^volumes: must be a map of volume names/);
  });
});
