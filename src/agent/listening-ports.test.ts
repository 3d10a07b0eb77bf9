// What an instance listens on, read from /proc, and how a user is told it ignores $PORT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { listeningSockets, notListeningReason, procAddress } from './listening-ports.ts';

test('/proc/net addresses read as people write them', () => {
  assert.equal(procAddress('0100007F'), '127.0.0.1');
  assert.equal(procAddress('00000000'), '0.0.0.0');
  assert.equal(procAddress('00000000000000000000000000000000'), '[::]');
  assert.equal(procAddress('00000000000000000000000001000000'), '[::1]');
  assert.equal(procAddress('0000000000000000FFFF00000100007F'), '127.0.0.1', 'IPv4-mapped');
  assert.equal(procAddress('B80D0120000000000000000001000000'), '[2001:db8::1]');
});

test('the sockets a process tree listens on, and the message when $PORT is not among them', async () => {
  // Listens on two ports of its own choosing (IPv4 and IPv6 when the host has it), then prints them.
  const script = `const net=require('net');const a=net.createServer().listen(0,'127.0.0.1',()=>{const b=net.createServer();b.on('error',()=>console.log(a.address().port));b.listen(0,'::',()=>console.log(a.address().port+' '+b.address().port))})`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = await once(child.stdout!, 'data');
    const [v4, v6] = String(line).trim().split(' ').map(Number);
    const sockets = listeningSockets([child.pid!])!;
    assert.ok(sockets.some((s) => s.address === '127.0.0.1' && s.port === v4), JSON.stringify(sockets));
    if (v6) assert.ok(sockets.some((s) => s.address === '[::]' && s.port === v6), JSON.stringify(sockets));
    assert.equal(notListeningReason(sockets, v4), null, 'it listens on that port: the cause is elsewhere');
    // Sockets are listed by port, so which of the two comes first is the kernel's choice.
    const reason = notListeningReason(sockets, 1)!;
    assert.match(reason, /does not listen on \$PORT \(1\); it listens on /);
    assert.ok(reason.includes(`127.0.0.1:${v4}`), reason);
    if (v6) assert.ok(reason.includes(`[::]:${v6}`), reason);
    assert.match(notListeningReason([], 8080)!, /nor on any other TCP port/);
    assert.equal(notListeningReason(null, 8080), null, 'unknown when /proc cannot say');
    assert.equal(listeningSockets([2 ** 22 + 12345]), null, 'no such process: cannot say');
  } finally {
    child.kill('SIGKILL');
  }
});
