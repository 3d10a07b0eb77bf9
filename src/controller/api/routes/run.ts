// GET /v1/projects/:project/run, upgraded to a WebSocket: `enjin run`. The bearer token is checked before the upgrade
// (and writes are refused the way guardWrites refuses them: a run makes a job); then the client sends `start` and the
// two sides speak run-protocol.ts until the run's job tree ends.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { EnjinError, invalid } from '../../../core/errors.ts';
import { OUTPUT_STDERR, OUTPUT_STDOUT, type RunClientMessage, type RunServerMessage } from '../../../core/run-protocol.ts';
import { componentLogger } from '../../../log/logger.ts';
import type { Controller } from '../../controller.ts';
import type { OneOffRuns, RunClient } from '../../one-off-runs.ts';
import type { RunSession } from '../../one-off-session.ts';
import { bearerToken, ID_PATTERN, ID_RULE } from '../inputs.ts';
import { notLeaderBody } from '../write-guard.ts';

const log = componentLogger('api');

const RUN_PATH = /^\/v1\/projects\/([^/?#]+)\/run(?:\?.*)?$/;
/** the client must say what to run this soon after connecting */
const START_WITHIN_MS = 30_000;
/** a ping this often keeps proxies from closing a quiet run (a shell waiting for input) and finds dead clients */
const PING_MS = 15_000;
/** the largest frame a client may send: a stdin chunk or a start message */
const MAX_FRAME_BYTES = 1024 * 1024;

export function runRoutes(c: Controller, runs: OneOffRuns) {
  return async (app: FastifyInstance): Promise<void> => {
    // Listed in /openapi.json; a plain GET (no Upgrade) is told how to use it.
    app.get('/v1/projects/:project/run', {
      schema: {
        summary: 'Run a one-off process in the project\'s current release (WebSocket: send {"type":"start","command":[…],"service"?,"tty"?}, then stdin as binary frames; output comes back as binary frames whose first byte is 1 (stdout) or 2 (stderr), and {"type":"exit"} last)',
        params: Type.Object({ project: Type.String() }),
      },
    }, async () => {
      throw new EnjinError('invalid_request', 'this route is a WebSocket: connect with `Upgrade: websocket` (the CLI: `enjin run -- CMD`)', { status: 426 });
    });

    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void upgrade(c, wss, runs, req, socket, head).catch((err: unknown) => {
        log.warn({ err }, 'a run connection failed before it started');
        reject(socket, err);
      });
    };
    app.server.on('upgrade', onUpgrade);
    app.addHook('onClose', async () => {
      app.server.off('upgrade', onUpgrade);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    });
  };
}

async function upgrade(c: Controller, wss: WebSocketServer, runs: OneOffRuns, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const m = RUN_PATH.exec(req.url ?? '');
  if (!m) throw new EnjinError('not_found', `no WebSocket at ${(req.url ?? '').split('?')[0]}; the one there is GET /v1/projects/NAME/run`, { status: 404 });
  const project = decodeURIComponent(m[1]);
  if (!ID_PATTERN.test(project)) throw new EnjinError('invalid_id', `the project in the path is not a valid name (${ID_RULE})`, { status: 400 });
  const token = bearerToken(req.headers.authorization);
  if (!token) throw new EnjinError('unauthorized', 'this API needs a token: pass `Authorization: Bearer TOKEN` (the CLI reads it from DATA/credentials.json or ENJIN_TOKEN)', { status: 401 });
  if (!(await c.auth.check(token))) throw new EnjinError('unauthorized', 'the token is not valid for this enjin; use the one in DATA/credentials.json', { status: 401 });
  // A run makes a job: the leader's, with its store writable, as for every write.
  if (!c.leadership.leading) {
    const body = notLeaderBody(c);
    throw new EnjinError('not_leader', body.error.message, { status: 503 });
  }
  await c.store.assertWritable();
  // The API's idle timeout is for requests; a run may wait on a person for a long time (pings find dead clients).
  (socket as { setTimeout?: (ms: number) => void }).setTimeout?.(0);
  wss.handleUpgrade(req, socket, head, (ws) => serve(ws, runs, project));
}

function serve(ws: WebSocket, runs: OneOffRuns, project: string): void {
  let session: RunSession | null = null;
  let opening = false;
  const sendJson = (msg: RunServerMessage) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
  };
  const client: RunClient = {
    send: sendJson,
    output: (stream, data, sent) => {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(Buffer.concat([Buffer.from([stream === 'stderr' ? OUTPUT_STDERR : OUTPUT_STDOUT]), data]), { binary: true }, (err) => {
        if (!err) sent();
      });
    },
    pauseInput: () => ws.pause(),
    resumeInput: () => ws.resume(),
    close: () => ws.close(1000, 'the run ended'),
  };
  const fail = (err: unknown) => {
    const e = err instanceof EnjinError ? err : new EnjinError('internal', `the controller failed: ${(err as Error).message}`, { status: 500 });
    sendJson({ type: 'error', error: { code: e.code, message: e.message } });
    ws.close(1000, 'the run could not start');
  };
  const startTimer = setTimeout(() => { if (!session && !opening) fail(invalid(`say what to run within ${START_WITHIN_MS / 1000} s of connecting: {"type":"start","command":[…]}`)); }, START_WITHIN_MS);
  let alive = true;
  const ping = setInterval(() => {
    if (!alive) { ws.terminate(); return; }
    alive = false;
    ws.ping();
  }, PING_MS);
  ws.on('pong', () => { alive = true; });
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      session?.stdin(buf);
      return;
    }
    let msg: RunClientMessage;
    try {
      msg = JSON.parse(buf.toString('utf8')) as RunClientMessage;
    } catch {
      return fail(invalid('text frames must be JSON messages (see run-protocol)'));
    }
    if (msg?.type === 'start') {
      if (session || opening) return fail(invalid('a run connection takes one start message'));
      opening = true;
      clearTimeout(startTimer);
      runs.open(project, { command: msg.command, service: msg.service, tty: msg.tty }, client).then((s) => {
        session = s;
        if (ws.readyState !== ws.OPEN) s.disconnected();
      }, fail);
      return;
    }
    if (!session) return;
    if (msg?.type === 'eof') session.eof();
    else if (msg?.type === 'resize' && Number.isInteger(msg.rows) && Number.isInteger(msg.cols) && msg.rows > 0 && msg.cols > 0 && msg.rows <= 10_000 && msg.cols <= 10_000) session.resize(msg.rows, msg.cols);
    else if (msg?.type === 'signal' && ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'].includes(msg.signal)) session.signal(msg.signal);
  });
  ws.on('close', () => {
    clearTimeout(startTimer);
    clearInterval(ping);
    session?.disconnected();
  });
  ws.on('error', (err) => log.debug({ err }, 'a run connection failed'));
}

/** Answers a refused upgrade as HTTP, with enjin's JSON error, and closes the socket. */
function reject(socket: Duplex, err: unknown): void {
  const e = err instanceof EnjinError ? err : new EnjinError('internal', `the controller failed: ${(err as Error).message}`, { status: 500 });
  const body = JSON.stringify({ error: e.toJSON() });
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${e.status} ${e.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  } else socket.destroy();
}
