// enjin up under a low descriptor limit: the soft limit is raised, the router caps its connections and closes idle
// ones, and the API keeps answering while the router is full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { cleanup, EnjinProcess, eventually, tempDir, viaRouter } from './support/enjin.ts';
import { defaultMaxConnections } from '../src/router/limits.ts';

const SOFT = 256;
const HARD = 1024;
const EXTRA = 40;

function softLimitOf(pid: number): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

test('descriptors: soft limit raised, router connections capped and idle ones closed, API answers throughout', { timeout: 240_000 }, async () => {
  const dataDir = tempDir('fd');
  const enjin = await EnjinProcess.start(dataDir, [], ['prlimit', `--nofile=${SOFT}:${HARD}`]);
  const sockets: Socket[] = [];
  try {
    assert.equal(softLimitOf(enjin.child.pid!), HARD, 'the soft limit was raised to the hard one');
    assert.match(enjin.output, new RegExp(`file descriptors: limit (raised from ${SOFT} to )?${HARD}\\b`), 'the limit is reported');
    const cap = enjin.routerMaxConnections;
    assert.equal(cap, defaultMaxConnections(HARD));
    assert.ok(cap < HARD / 2, `the cap ${cap} leaves a reserve`);

    // More idle connections than the cap: they connect and say nothing. One at a time, so that a loaded machine's
    // accept queue never overflows (a dropped SYN is retried by the kernel for minutes).
    let closed = 0;
    for (let i = 0; i < cap + EXTRA; i++) {
      const s = connect({ host: '127.0.0.1', port: enjin.routerPort });
      s.on('error', () => {});
      s.on('close', () => closed++);
      // Read whatever comes (a 408): a paused socket may never see the router's FIN, and would stay half-closed here.
      s.resume();
      sockets.push(s);
      await new Promise((resolve) => {
        s.once('connect', resolve);
        s.once('close', resolve);
      });
    }
    await eventually(() => closed >= EXTRA, `the ${EXTRA} connections beyond the cap to be closed`, 60_000);
    assert.ok(closed < cap, 'the connections within the cap stay open');

    // The router is full: the API and its health check still answer.
    const health = await fetch(`${enjin.api}/healthz`);
    assert.equal(health.status, 200);
    const projects = await fetch(`${enjin.api}/v1/projects`, { headers: { authorization: `Bearer ${enjin.token}` } });
    assert.equal(projects.status, 200);

    // Idle connections are closed by the router (408 after its header timeout); then it serves again.
    await eventually(() => closed === sockets.length, `the router to close every idle connection (${sockets.length})`, 180_000).catch((err) => {
      throw new Error(`${(err as Error).message}; ${closed} closed`);
    });
    const r = await viaRouter(enjin.routerPort, 'nothing.localhost');
    assert.equal(r.status, 404);
    assert.equal((await fetch(`${enjin.api}/healthz`)).status, 200);
    assert.equal((await enjin.stop()).code, 0);
  } finally {
    for (const s of sockets) s.destroy();
    await enjin.stop('SIGKILL');
    cleanup(dataDir);
  }
});
