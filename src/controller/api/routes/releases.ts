// Config vars and releases: read and change a project's config (each change a new release of the same build), list
// its releases, roll back to one. Values are shown only when asked for (`reveal`); every other answer redacts them.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { ReleaseView } from '../../../core/api.ts';
import type { ConfigVars, Project, Version } from '../../../core/model.ts';
import { EnjinError } from '../../../core/errors.ts';
import type { Controller } from '../../controller.ts';
import { buildIdOf, configOf, redacted } from '../../releases.ts';
import { callerOf } from '../inputs.ts';
import { viewProject, viewVersion } from '../views.ts';

const ProjectParams = Type.Object({ project: Type.String() });
const MAX_CHANGES = 200;

export function viewRelease(c: Controller, v: Version): ReleaseView {
  const build = c.state.versions.get(buildIdOf(v));
  return {
    ...viewVersion(c, v),
    build: build?.number ?? null,
    kind: v.cause?.kind ?? 'deploy',
    description: v.cause?.description ?? 'deploy',
    by: v.cause?.by ?? null,
    git: v.cause?.git ?? null,
    configKeys: configKeys(v.config),
  };
}

/** Names only: which vars a release has, never their values. */
function configKeys(config: ConfigVars | undefined): { project: string[]; services: Record<string, string[]> } {
  return {
    project: Object.keys(config?.project ?? {}).sort(),
    services: Object.fromEntries(Object.entries(config?.services ?? {}).map(([s, m]) => [s, Object.keys(m).sort()])),
  };
}

export function releaseRoutes(c: Controller) {
  return async (plugin: FastifyInstance): Promise<void> => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const currentNumber = (p: Project) => (p.currentVersionId ? c.state.versions.get(p.currentVersionId)?.number ?? null : null);

    app.get('/v1/projects/:project/config', {
      schema: {
        summary: "A project's config vars (the current release's), values redacted unless reveal=true",
        params: ProjectParams,
        querystring: Type.Object({ reveal: Type.Optional(Type.Boolean({ default: false })) }),
      },
    }, async (req) => {
      const p = c.project(req.params.project);
      const config = configOf(c.state, p);
      return { release: currentNumber(p), revealed: req.query.reveal === true, config: req.query.reveal ? config : redacted(config) };
    });

    app.patch('/v1/projects/:project/config', {
      schema: {
        summary: 'Set and unset config vars, project-wide or for one service: a new release of the same build (nothing is built), rolled out one instance at a time',
        params: ProjectParams,
        body: Type.Object({
          set: Type.Optional(Type.Record(Type.String(), Type.String())),
          unset: Type.Optional(Type.Array(Type.String(), { maxItems: MAX_CHANGES })),
          service: Type.Optional(Type.String()),
        }),
      },
    }, async (req, reply) => {
      const p = c.project(req.params.project);
      const set = req.body.set ?? {};
      if (Object.keys(set).length > MAX_CHANGES) throw new EnjinError('config_invalid', `at most ${MAX_CHANGES} config vars in one change`, { status: 400 });
      const done = await c.changeConfig(p, { set, unset: req.body.unset ?? [], ...(req.body.service !== undefined ? { service: req.body.service } : {}) }, { by: callerOf(req) });
      const config = configOf(c.state, c.state.projects.get(p.id)!);
      return reply.status(done.job ? 202 : 200).send({
        release: done.version ? viewRelease(c, done.version) : null,
        job: done.job,
        config: redacted(config),
      });
    });

    app.get('/v1/projects/:project/releases', {
      schema: { summary: 'Releases, newest first: number, what made it (deploy with its git commit, config change, rollback), who, when, its build', params: ProjectParams },
    }, async (req) => {
      const p = c.project(req.params.project);
      // Scales change what runs without making a release: listed beside them, from the project's job history.
      const { jobs } = await c.jobIndex.list({ rootsOnly: true, limit: 500, tags: { project: p.name } });
      const scales = jobs.filter((j) => j.kind === 'scale' && j.state === 'succeeded' && j.createdAt >= p.createdAt)
        .map((j) => ({ job: j.id, description: j.title.replace(`scale ${p.name} `, 'scale '), by: typeof j.params.by === 'string' ? j.params.by : null, createdAt: j.createdAt }));
      return { releases: c.state.versionsOf(p.id).reverse().map((v) => viewRelease(c, v)), scales };
    });

    app.post('/v1/projects/:project/rollback', {
      schema: {
        summary: "A new release with an earlier release's build and config (default: the one before the current one); nothing is built",
        params: ProjectParams,
        body: Type.Optional(Type.Object({ version: Type.Optional(Type.Union([Type.String(), Type.Integer()])) })),
      },
    }, async (req, reply) => {
      const p = c.project(req.params.project);
      const done = await c.rollback(p, req.body?.version, { by: callerOf(req) });
      return reply.status(done.job ? 202 : 200).send({ version: done.version ? viewVersion(c, done.version) : null, release: done.version ? viewRelease(c, done.version) : null, job: done.job, project: viewProject(c, c.state.projects.get(p.id)!) });
    });
  };
}
