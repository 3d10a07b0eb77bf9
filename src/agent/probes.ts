// Readiness probes: a TCP connect, or an HTTP GET answering 2xx/3xx, against an instance's port.
import { request } from 'node:http';
import { connect } from 'node:net';

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export function httpProbe(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    // No connection pooling: a probe must not keep sockets open to the instance between checks.
    const req = request({ host, port, path: path.startsWith('/') ? path : `/${path}`, method: 'GET', agent: false, headers: { connection: 'close', 'user-agent': 'enjin-agent' } });
    const timer = setTimeout(() => req.destroy(), timeoutMs);
    req.once('response', (res) => {
      clearTimeout(timer);
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400);
      res.once('end', () => req.destroy());
    });
    req.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    req.end();
  });
}
