import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { listenerAmong } from './listening-ports.ts';

test('the listener check tells an instance’s own socket from another process on the port', async () => {
  // A foreign listener: this test process.
  const foreign = net.createServer().listen(0, '127.0.0.1');
  await once(foreign, 'listening');
  const foreignPort = (foreign.address() as net.AddressInfo).port;

  // "The instance": a process that listens on a port of its own.
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(0,'127.0.0.1',function(){console.log(this.address().port)})`], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const [line] = await once(child.stdout!, 'data');
    const ownPort = Number(String(line).trim());
    assert.equal(listenerAmong([child.pid!], ownPort), true);
    assert.equal(listenerAmong([child.pid!], foreignPort), false, 'someone else listens there');
    foreign.close();
    await once(foreign, 'close');
    assert.equal(listenerAmong([child.pid!], foreignPort), false, 'nobody listens there');
  } finally {
    process.kill(-child.pid!, 'SIGKILL');
  }
});
