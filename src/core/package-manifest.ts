// What a package runs and how it is built, from its root files: enjin.yaml (or enjin.yml), a Procfile, and what a
// builder detects (package.json, requirements.txt, index.html…). enjin.yaml adds to a Procfile: the processes come
// from the Procfile, everything else from enjin.yaml. Read by the API from an upload, and by a controller recovering
// from the nodes from a package or an unpacked version.
import { EnjinError, type ErrorDetail } from './errors.ts';
import { manifestInvalid, parseManifest, parseManifestParts, STOP_TIMEOUT_DEFAULT, type ManifestParts } from './manifest.ts';
import { parseProcfile } from './procfile.ts';
import type { Manifest, ServiceSpec } from './model.ts';
import { withProjectVolumes } from './volumes.ts';
import { detectBuilder, planBuild, type BuildPlan, type RootFiles } from './builders/detect.ts';

/**
 * The manifest of a package (anything that reads root files by name), with the file it is mostly read from (the
 * one problems point into) and its text. `project` is the name it is deployed as, used when no file names one.
 */
export function manifestFrom(pkg: RootFiles, project: string): { manifest: Manifest; text: string; file: string } {
  const yamlFile = pkg.read('enjin.yaml') !== null ? 'enjin.yaml' : pkg.read('enjin.yml') !== null ? 'enjin.yml' : null;
  const yamlText = yamlFile ? pkg.read(yamlFile) : null;
  const procfileText = pkg.read('Procfile');
  const parts = yamlFile && yamlText !== null ? parseManifestParts(yamlText, yamlFile, project) : null;
  const procfile = procfileText !== null ? parseProcfile(procfileText, parts?.manifest.project ?? project) : null;
  const plan = buildPlanFor(pkg, parts);
  if (!parts && !procfile && !plan) {
    throw new EnjinError('manifest_missing', 'the package has no enjin.yaml, Procfile, package.json, requirements.txt, pyproject.toml, Pipfile or index.html at its root, so nothing says what to run; add a Procfile ("web: ./server") or an enjin.yaml', { status: 422 });
  }
  const file = yamlFile ?? (procfile ? 'Procfile' : 'package');
  const manifest = assemble(file, parts, procfile, plan, project);
  return { manifest, text: yamlText ?? procfileText ?? '', file };
}

/** The builder to run, or null: explicit `prepare:` replaces detection, `build: none` turns it off. */
function buildPlanFor(pkg: RootFiles, parts: ManifestParts | null): BuildPlan | null {
  if (parts?.prepareGiven) return null;
  const named = parts?.build?.builder ?? null;
  if (named === 'none') return null;
  if (named) return planBuild(named, `named in enjin.yaml (build: ${named})`, pkg);
  const found = detectBuilder(pkg);
  return found ? planBuild(found.builder, found.reason, pkg) : null;
}

function assemble(file: string, parts: ManifestParts | null, procfile: Manifest | null, plan: BuildPlan | null, project: string): Manifest {
  const problems: ErrorDetail[] = [];
  const problem = (at: { line: number; column: number } | null, path: string, message: string): void => {
    problems.push({ file, ...(at ?? {}), path, message: `${path}: ${message}` });
  };
  const services: Record<string, ServiceSpec> = { ...(parts?.manifest.services ?? {}) };
  let processesFrom: Manifest['processesFrom'];
  if (procfile) {
    processesFrom = 'Procfile';
    for (const [name, proc] of Object.entries(procfile.services)) {
      const given = services[name];
      if (!given) {
        services[name] = proc;
        continue;
      }
      const at = parts?.commandAt.get(name);
      if (at) problem(at, `services.${name}.command`, `"${name}" is a process of the Procfile, which gives its command; remove the command here (enjin.yaml adds settings to Procfile processes)`);
      else services[name] = { ...given, command: proc.command };
    }
  }
  for (const [name, at] of parts?.commandless ?? []) {
    if (procfile?.services[name]) continue;
    if (name === 'web' && !procfile && plan?.defaultWeb) {
      services.web = { ...services.web, command: plan.defaultWeb };
      continue;
    }
    const where = procfile ? 'it is not in the Procfile, so ' : '';
    const hint = name === 'web' && plan?.noDefaultWeb ? `; ${plan.noDefaultWeb}` : '';
    problem(at, `services.${name}`, `${where}it needs a command: the shell command that starts the service, e.g. "command: node server.js"${hint}`);
  }
  if (Object.keys(services).length === 0 && !problems.length) {
    if (plan?.defaultWeb) {
      processesFrom = 'builder';
      services.web = { name: 'web', command: plan.defaultWeb, instances: 1, listens: true, hostnames: [], health: null, env: {}, stopTimeout: STOP_TIMEOUT_DEFAULT };
    } else {
      const why = plan?.noDefaultWeb ?? 'add a Procfile ("web: node server.js") or services in enjin.yaml';
      if (!parts) throw new EnjinError('manifest_missing', `the ${plan?.record.builder ?? ''} builder found what to build (${plan?.record.reason}) but not what to run: ${why}`, { status: 422 });
      problem(parts.top, 'services', `nothing says what to run: ${why}`);
    }
  }
  if (problems.length) throw manifestInvalid(file, problems);
  const steps = parts?.build?.steps ?? [];
  const manifest: Manifest = {
    project: parts?.manifest.project ?? procfile?.project ?? project,
    prepare: plan ? [...plan.steps, ...steps] : parts?.prepareGiven ? parts.manifest.prepare : steps,
    env: parts?.manifest.env ?? {},
    // enjin.yaml's project-wide volumes reach the Procfile's and the builder's processes too
    services: withProjectVolumes(services, parts?.manifest.volumes),
  };
  if (parts?.manifest.volumes) manifest.volumes = parts.manifest.volumes;
  // enjin.yaml's says it for the project as it says the rest; else the Procfile's release line.
  const release = parts?.manifest.release ?? procfile?.release;
  if (release) manifest.release = release;
  if (plan) manifest.build = plan.record;
  if (processesFrom) manifest.processesFrom = processesFrom;
  return manifest;
}

/** The manifest from one file's text, as `manifestFrom` would read it (`file` is enjin.yaml, enjin.yml or Procfile). */
export function manifestFromFile(file: string, text: string, project: string): Manifest {
  if (file === 'Procfile') return parseProcfile(text, project);
  if (file === 'enjin.yaml' || file === 'enjin.yml') return parseManifest(text, file);
  throw new EnjinError('manifest_missing', `${file} is not a manifest file (enjin.yaml, enjin.yml or Procfile)`, { status: 422 });
}
