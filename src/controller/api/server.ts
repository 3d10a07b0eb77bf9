// The controller's REST API: Fastify + TypeBox, OpenAPI at /openapi.json, a bearer token on every route but /healthz.
import { rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { EnjinError, invalid, notFound } from '../../core/errors.ts';
import { NAME_PATTERN, NAME_RULE } from '../../core/ids.ts';
import type { Job, Project } from '../../core/model.ts';
import { subjects, type AgentReply, type RouterStatsReply } from '../../core/messages.ts';
import { inspectPackageFile } from '../../artifact/inspect.ts';
import { formatBytes } from '../../artifact/rules.ts';
import { MAX_CONCURRENT_UPLOADS, MAX_PACKAGE_BYTES, receiveUpload, type ReceivedUpload } from './upload.ts';
import type { Controller } from '../controller.ts';
import { jobListRoutes } from './routes/jobs.ts';
import { joinRoutes } from './routes/join.ts';
import { nodeRoutes } from './routes/nodes.ts';
import { volumeRoutes } from './routes/volumes.ts';
import { destroyProject } from './routes/destroy.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { releaseRoutes } from './routes/releases.ts';
import { eventRoutes } from './routes/events.ts';
import { runRoutes } from './routes/run.ts';
import { rolloutRoutes } from './routes/rollouts.ts';
import { projectControlRoutes } from './routes/project-control.ts';
import { guardWrites } from './write-guard.ts';
import { bearerToken, callerOf, setCaller, CONTROL_CHARS, ID_PATTERN, ID_RULE, parseLogCursor, withPositions } from './inputs.ts';
import { manifestFrom } from '../../core/package-manifest.ts';
import { byServiceThenId, viewInstance, viewProject, viewQueued, viewVersion } from './views.ts';

/** JSON bodies: every route but the package upload. */
const MAX_JSON_BYTES = 1024 ** 2;
const IDLE_CONNECTION_MS = 300_000;

export async function buildApi(c: Controller): Promise<FastifyInstance> {
  // connectionTimeout: a client that sends nothing for that long (a stalled upload, a slow-loris) is disconnected;
  // live job streams send a heartbeat every 15 s, so they are never idle that long.
  const app = Fastify({ logger: false, bodyLimit: MAX_JSON_BYTES, trustProxy: false, connectionTimeout: IDLE_CONNECTION_MS }).withTypeProvider<TypeBoxTypeProvider>();

  await app.register(swagger, {
    openapi: {
      info: { title: 'enjin API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  // Packages are handed over as the raw stream, only on the upload route; everywhere else they are not a body.
  app.addContentTypeParser(['application/gzip', 'application/x-gzip', 'application/octet-stream'], (req, payload, done) => {
    if ((req.routeOptions.config as { packageUpload?: boolean } | undefined)?.packageUpload) return done(null, payload);
    done(new EnjinError('unsupported_media_type', `${req.method} ${req.routeOptions.url ?? req.url} takes a JSON body (Content-Type: application/json); only POST /v1/projects/NAME/deploys takes a package`, { status: 415 }), undefined);
  });

  app.addHook('onRequest', async (req: FastifyRequest) => {
    // Routes marked public (POST /v1/join: the join token in its body is the credential) take no bearer token.
    if (req.url === '/healthz' || (req.routeOptions.config as { public?: boolean } | undefined)?.public) return;
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new EnjinError('unauthorized', 'this API needs a token: pass `Authorization: Bearer TOKEN` (the CLI reads it from DATA/credentials.json or ENJIN_TOKEN)', { status: 401 });
    const role = await c.auth.check(token);
    if (!role) throw new EnjinError('unauthorized', 'the token is not valid for this enjin; use the one in DATA/credentials.json', { status: 401 });
    setCaller(req, c.auth.nameOf(token) ?? 'unknown');
  });
  // After authentication: followers refuse writes naming the leader; a store outage refuses desired-state changes.
  guardWrites(app, c);

  // Every id and name in a path, and every query value, is checked here once, before any route looks it up: a
  // control character (NUL above all, which PostgreSQL refuses) never reaches the store.
  app.addHook('preValidation', async (req: FastifyRequest) => {
    for (const [key, value] of Object.entries((req.params ?? {}) as Record<string, unknown>)) {
      // '*' is the not-found handler's catch-all, answered as a 404 below.
      if (key !== '*' && typeof value === 'string' && !ID_PATTERN.test(value)) {
        throw new EnjinError('invalid_id', `the ${key} in the path is not a valid id or name (${ID_RULE}); copy it from \`enjin projects\`, \`enjin jobs\` or \`enjin versions\``, { status: 400 });
      }
    }
    for (const [key, value] of Object.entries((req.query ?? {}) as Record<string, unknown>)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (typeof v === 'string' && CONTROL_CHARS.test(v)) throw invalid(`the query parameter ${key} contains a control character; send printable text`);
      }
    }
  });

  app.setErrorHandler((err: unknown, req, reply: FastifyReply) => {
    // A refused upload may still be arriving. Closing at once would reset the connection with the client's bytes
    // unread, and a reset can destroy our answer before the client reads it: so the rest is read and discarded (Node
    // dumps an unread body once the response is sent) for a bounded time, then the connection goes (a lingering close).
    if (!req.raw.complete && (req.routeOptions.config as { packageUpload?: boolean } | undefined)?.packageUpload) lingerThenClose(req.raw);
    if (err instanceof EnjinError) {
      return reply.status(err.status).send({ error: err.toJSON() });
    }
    const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown };
    if (e.validation) return reply.status(400).send({ error: { code: 'invalid_request', message: `${e.message}; see /openapi.json for this route's parameters` } });
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send({ error: { code: 'body_too_large', message: `request bodies are limited to ${formatBytes(MAX_JSON_BYTES)} of JSON; send less (packages go to POST /v1/projects/NAME/deploys)` } });
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply.status(415).send({ error: { code: 'unsupported_media_type', message: e.message } });
    if (e.statusCode && e.statusCode < 500) return reply.status(e.statusCode).send({ error: { code: 'invalid_request', message: e.message } });
    return reply.status(500).send({ error: { code: 'internal', message: `the controller failed: ${e.message ?? String(err)}` } });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}; see /openapi.json` } }));

  let uploadsInProgress = 0;
  const ProjectParams = Type.Object({ project: Type.String() });
  const projectView = (p: Project) => viewProject(c, p);

  // 200 only once every component of this process is up: scripts wait on it before deploying.
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => (c.ready ? { ok: true } : reply.status(503).send({ ok: false, starting: true })));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/v1/projects', { schema: { summary: 'List projects' } }, async () => ({
    projects: [...c.state.projects.values()].filter((p) => p.workspaceId === c.defaultWorkspace().id).sort((a, b) => a.name.localeCompare(b.name)).map(projectView),
  }));

  app.get('/v1/projects/:project', { schema: { summary: 'Show a project', params: ProjectParams } }, async (req) => ({ project: projectView(c.project(req.params.project)) }));

  app.delete('/v1/projects/:project', {
    schema: {
      summary: "Destroy a project: stop its instances, remove its routes, versions and packages; its volumes are kept unless volumes=true (which also removes the kept volumes of a project already destroyed)",
      params: ProjectParams,
      querystring: Type.Object({
        volumes: Type.Optional(Type.Boolean({ default: false })),
        force: Type.Optional(Type.Boolean({ default: false, description: 'complete at once: do not wait for nodes (an unreachable one stops the instances when it returns)' })),
      }),
    },
  }, async (req, reply) => {
    const r = await destroyProject(c, req.params.project, req.query.volumes === true, req.query.force === true);
    return reply.status(r.job ? 202 : 200).send(r);
  });

  app.post('/v1/projects/:project/deploys', {
    // The package is a stream handed over raw (see the content-type parser) and receiveUpload enforces its limit as it
    // reads; Fastify's bodyLimit stays at the JSON limit here too, so a JSON body cannot be buffered up to 512 MiB.
    config: { packageUpload: true },
    schema: {
      summary: `Upload a package (tar.gz of the project directory, at most ${formatBytes(MAX_PACKAGE_BYTES)}) and deploy it; refused as a whole, storing nothing`,
      params: ProjectParams,
      querystring: Type.Object({
        deploy: Type.Optional(Type.Boolean({ default: true })),
        // What `enjin releases` says of a deploy from a git checkout.
        commit: Type.Optional(Type.String({ pattern: '^[0-9a-f]{7,64}$' })),
        message: Type.Optional(Type.String({ maxLength: 200 })),
      }),
    },
  }, async (req, reply) => {
    const name = req.params.project;
    if (!NAME_PATTERN.test(name)) throw invalid(`project name "${name}" is not valid: ${NAME_RULE}`);
    const body = req.body as Readable | undefined;
    if (!(body instanceof Readable)) throw invalid('send the package as the request body with Content-Type: application/gzip');
    // Each upload in progress holds a file of up to MAX_PACKAGE_BYTES: a bounded number at a time bounds the disk.
    if (uploadsInProgress >= MAX_CONCURRENT_UPLOADS) {
      throw new EnjinError('too_many_uploads', `${MAX_CONCURRENT_UPLOADS} uploads are already being received; send this one again when one of them is done`, { status: 429 });
    }
    uploadsInProgress++;
    let upload: ReceivedUpload | null = null;
    try {
      const declared = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
      upload = await receiveUpload(body, c.packages.uploadPath(), declared);
      const pkg = await inspectPackageFile(upload.path, upload.sha256);
      const { manifest, text, file } = manifestFrom(pkg, name);
      if (manifest.project !== name) {
        throw new EnjinError('project_mismatch', `the manifest names project "${manifest.project}" but the upload is for "${name}"; deploy it as ${manifest.project} or change \`project:\` in ${file}`, { status: 422 });
      }
      let done;
      try {
        const git = req.query.commit ? { commit: req.query.commit, message: req.query.message ?? '' } : undefined;
        done = await c.deploy(name, upload, manifest, req.query.deploy !== false, { by: callerOf(req), ...(git ? { git } : {}) });
      } catch (err) {
        throw withPositions(err, file, text);
      }
      return reply.status(done.job ? 202 : 200).send({ project: projectView(done.project), version: viewVersion(c, done.version), created: done.created, job: viewQueued(c, done.job) });
    } finally {
      uploadsInProgress--;
      // Adopted into the package store by an accepted deploy; anything else leaves nothing behind.
      if (upload) await rm(upload.path, { force: true });
    }
  });

  app.get('/v1/projects/:project/versions', { schema: { summary: 'List versions', params: ProjectParams } }, async (req) => {
    const p = c.project(req.params.project);
    return { versions: c.state.versionsOf(p.id).reverse().map((v) => viewVersion(c, v)) };
  });

  app.post('/v1/projects/:project/scale', {
    schema: {
      summary: 'Set instance counts: {"services": {"web": 3, "worker": "+1"}}',
      params: ProjectParams,
      // A string, not a number: the validator coerces types, and "+1" must not become 1.
      body: Type.Object({ services: Type.Record(Type.String(), Type.String({ pattern: '^[+-]?[0-9]+$', description: '3 sets the count; +1 and -1 change it' })) }),
    },
  }, async (req, reply) => {
    const p = c.project(req.params.project);
    const version = p.currentVersionId ? c.state.versions.get(p.currentVersionId) : undefined;
    if (!version) throw new EnjinError('not_deployed', `${p.name} has no version yet; deploy it first`, { status: 409 });
    const changes: Record<string, number> = {};
    for (const [service, value] of Object.entries(req.body.services)) {
      // Only the version's own services: a key such as "constructor" must not reach Object.prototype.
      const spec = Object.hasOwn(version.manifest.services, service) ? version.manifest.services[service] : undefined;
      if (!spec) throw new EnjinError('unknown_service', `${p.name} has no service "${service}"; it has ${Object.keys(version.manifest.services).join(', ')}`, { status: 404 });
      const now = (Object.hasOwn(p.scale, service) ? p.scale[service] : undefined) ?? spec.instances;
      const s = String(value);
      const n = s.startsWith('+') || s.startsWith('-') ? now + Number(s) : Number(s);
      if (!Number.isInteger(n) || n < 0 || n > 100) throw invalid(`${service} would have ${n} instances; the count must be from 0 to 100`);
      changes[service] = n;
    }
    const job = await c.scale(p, changes, callerOf(req));
    return reply.status(job ? 202 : 200).send({ project: projectView(c.state.projects.get(p.id)!), job: viewQueued(c, job) });
  });

  app.post('/v1/projects/:project/restart', {
    schema: {
      summary: 'Restart instances one at a time, each replaced by a ready copy before it stops: {"services": ["web"]} (all when empty)',
      params: ProjectParams,
      body: Type.Optional(Type.Object({ services: Type.Optional(Type.Array(Type.String(), { maxItems: 100 })) })),
    },
  }, async (req, reply) => {
    const p = c.project(req.params.project);
    const version = p.currentVersionId ? c.state.versions.get(p.currentVersionId) : undefined;
    if (!version) throw new EnjinError('not_deployed', `${p.name} has no version yet; deploy it first`, { status: 409 });
    const services = req.body?.services ?? [];
    for (const service of services) {
      if (!Object.hasOwn(version.manifest.services, service)) throw new EnjinError('unknown_service', `${p.name} has no service "${service}"; it has ${Object.keys(version.manifest.services).join(', ')}`, { status: 404 });
    }
    const job = await c.restart(p, services);
    return reply.status(job ? 202 : 200).send({ project: projectView(c.state.projects.get(p.id)!), job: viewQueued(c, job) });
  });

  app.get('/v1/instances', { schema: { summary: 'List instances', querystring: Type.Object({ project: Type.Optional(Type.String()) }) } }, async (req) => {
    const projects = req.query.project ? [c.project(req.query.project)] : [...c.state.projects.values()];
    return { instances: projects.flatMap((p) => c.state.instancesOf(p.id).map((i) => viewInstance(c, i))).sort(byServiceThenId) };
  });

  app.get('/v1/projects/:project/logs', {
    schema: {
      summary: "Read instances' logs; pass the returned cursor back to follow",
      params: ProjectParams,
      querystring: Type.Object({
        service: Type.Optional(Type.String()),
        instance: Type.Optional(Type.String()),
        lines: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, default: 100 })),
        cursor: Type.Optional(Type.String()),
      }),
    },
  }, async (req) => {
    const p = c.project(req.params.project);
    const { service, instance, cursor } = req.query;
    const lines = req.query.lines ?? 100;
    let offsets: Record<string, number> = Object.create(null);
    if (cursor) {
      offsets = parseLogCursor(cursor);
    }
    const instances = c.state.instancesOf(p.id).filter((i) => (!service || i.service === service) && (!instance || i.id === instance));
    if (service && !instances.length && !c.state.versionsOf(p.id).some((v) => Object.hasOwn(v.manifest.services, service))) {
      throw new EnjinError('unknown_service', `${p.name} has no service "${service}"`, { status: 404 });
    }
    const entries = await Promise.all(instances.map(async (i) => {
      const from = offsets[i.id] ?? -1;
      try {
        const r = await c.bus.request<AgentReply>(subjects.agentRpc(i.nodeId), { op: 'logs', instanceId: i.id, offset: from, maxBytes: from === -1 ? Math.min(lines * 400, 4 << 20) : 1 << 20 }, { timeoutMs: 5000 });
        if (r.op !== 'logs') return null;
        let text = r.data;
        if (from === -1) {
          const all = text.split('\n');
          if (all[all.length - 1] === '') all.pop();
          text = all.slice(-lines).join('\n') + (all.length ? '\n' : '');
        }
        offsets[i.id] = r.offset;
        return { instanceId: i.id, service: i.service, data: text };
      } catch (err) {
        return { instanceId: i.id, service: i.service, data: '', error: (err as Error).message };
      }
    }));
    return { entries: entries.filter(Boolean), cursor: Buffer.from(JSON.stringify(offsets)).toString('base64url') };
  });

  await app.register(jobListRoutes(c));
  await app.register(joinRoutes(c.admission));
  await app.register(clusterRoutes(c));
  await app.register(releaseRoutes(c));
  await app.register(eventRoutes(c));
  await app.register(runRoutes(c, c.runs));
  await app.register(rolloutRoutes(c));
  await app.register(projectControlRoutes(c));

  app.get('/v1/jobs/:id', { schema: { summary: 'A job tree with states and, with logs=true, logs', params: Type.Object({ id: Type.String() }), querystring: Type.Object({ logs: Type.Optional(Type.Boolean({ default: true })) }) } }, async (req) => ({
    job: await c.jobs.getTree(req.params.id, req.query.logs !== false),
  }));

  app.get('/v1/jobs/:id/events', {
    schema: {
      summary: "Follow a job tree live (text/event-stream): a 'tree' event with the whole tree and its logs, then 'change' (a job) and 'log' ({ jobId, line }) events, then 'end'",
      params: Type.Object({ id: Type.String() }),
    },
  }, async (req, reply) => {
    const first = await c.jobs.getJob(req.params.id);
    const rootId = first.rootId;
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    // Listen before taking the snapshot so nothing falls between them; the client applies events idempotently.
    const buffered: Array<[string, unknown]> = [];
    let live = false;
    const emit = (event: string, data: unknown) => (live ? send(event, data) : buffered.push([event, data]));
    const onChange = (job: Job) => {
      if (job.rootId !== rootId) return;
      emit('change', job);
      if (job.id === rootId && ['succeeded', 'failed', 'aborted'].includes(job.state)) end();
    };
    const onLog = (entry: { jobId: string; rootId: string; line: string; n: number }) => {
      if (entry.rootId === rootId) emit('log', { jobId: entry.jobId, line: entry.line, n: entry.n });
    };
    const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), 15_000);
    let ended = false;
    const cleanup = () => {
      clearInterval(heartbeat);
      c.jobs.events.off('change', onChange);
      c.jobs.events.off('log', onLog);
    };
    const end = () => {
      if (ended) return;
      ended = true;
      // Let the engine's last log lines (written as the tree ends) go out first.
      setImmediate(() => {
        cleanup();
        if (live) { send('end', { id: rootId }); out.end(); }
      });
    };
    c.jobs.events.on('change', onChange);
    c.jobs.events.on('log', onLog);
    out.on('close', cleanup);
    const { tree, logsBefore } = await c.jobs.snapshot(rootId, true);
    send('tree', tree);
    live = true;
    // Lines numbered below logsBefore are in the snapshot already.
    for (const [event, data] of buffered) if (event !== 'log' || (data as { n: number }).n >= logsBefore) send(event, data);
    if (ended || ['succeeded', 'failed', 'aborted'].includes(tree.state)) {
      cleanup();
      send('end', { id: rootId });
      out.end();
    }
  });

  app.post('/v1/jobs/:id/abort', { schema: { summary: "Abort a job's tree", params: Type.Object({ id: Type.String() }) } }, async (req) => ({
    // A queued tree leaves its queue and never runs; a running one stops now. Either way the tree ends.
    job: await c.jobs.abort(req.params.id, 'aborted by a user'),
  }));

  await app.register(nodeRoutes(c));
  await app.register(volumeRoutes(c));

  app.get('/v1/routes', { schema: { summary: 'The route table routers serve' } }, async () => ({ routes: c.routes.table }));

  app.get('/v1/stats', { schema: { summary: 'Request statistics per service from every router' } }, async () => {
    const routers = await Promise.all([...c.routes.routers.keys()].map((id) =>
      c.bus.request<RouterStatsReply>(subjects.routerRpc(id), { op: 'stats' }, { timeoutMs: 3000 }).catch((err: Error) => ({ routerId: id, error: err.message }))));
    return { routers };
  });

  app.get('/v1/notifications', { schema: { summary: 'Recent notifications (instance exits, node loss)' } }, async () => ({ notifications: c.notifications.slice(-100) }));

  app.get('/v1/versions/:id/package', { schema: { summary: "Download a version's package (agents fetch theirs over the bus)", params: Type.Object({ id: Type.String() }) } }, async (req, reply) => {
    const v = c.state.versions.get(req.params.id);
    if (!v || !(await c.packages.has(v.sha256))) throw notFound(`package of version ${req.params.id}`);
    return reply.header('content-type', 'application/gzip').header('content-length', v.size).header('x-sha256', v.sha256).send(c.packages.open(v.sha256));
  });

  return app;
}

/** How long the rest of a refused upload is read and thrown away before its connection is closed. */
const UPLOAD_LINGER_MS = 10_000;

function lingerThenClose(req: IncomingMessage): void {
  const socket = req.socket;
  // Flowing with no reader: what still arrives is thrown away, never stored.
  req.resume();
  const timer = setTimeout(() => socket.destroy(), UPLOAD_LINGER_MS);
  timer.unref();
  // The whole body arrived (and was dumped): the connection is clean again, nothing to cut.
  req.once('end', () => clearTimeout(timer));
  socket.once('close', () => clearTimeout(timer));
}
