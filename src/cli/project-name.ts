// Which project a command is about, when the user did not say.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { EnjinClient } from '../client/client.ts';
import { EnjinError } from '../core/errors.ts';

/** The project a command is about: --project, else ./enjin.yaml's, else the only one there is. */
export async function projectName(explicit: string | undefined, c: EnjinClient): Promise<string> {
  if (explicit) return explicit;
  const manifest = join(process.cwd(), 'enjin.yaml');
  if (existsSync(manifest)) {
    try {
      const doc = parseYaml(readFileSync(manifest, 'utf8')) as { project?: unknown };
      if (typeof doc?.project === 'string') return doc.project;
    } catch {
      // a broken manifest: fall through to the other ways of knowing
    }
  }
  const { projects } = await c.projects();
  if (projects.length === 1) return projects[0].name;
  throw new EnjinError('project_required', projects.length ? `say which project with --project (one of ${projects.map((p) => p.name).join(', ')})` : 'there are no projects yet; deploy one with `enjin deploy DIR`', { status: 400 });
}
