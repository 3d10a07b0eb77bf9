// Chooses a builder for a package from its root files (like a buildpack's detect step) and says why. Pure.
import type { BuildRecord } from '../model.ts';

/** Where the agent writes the builders' scripts inside a version before its prepare commands run. */
export const BUILD_DIR = '.enjin-build';

export type BuilderName = 'node' | 'python' | 'static';
export const BUILDER_NAMES: readonly BuilderName[] = ['node', 'python', 'static'];

/** Anything that reads a package's root files by name (PackageInfo, a directory). */
export interface RootFiles {
  read(path: string): string | null;
  /** whether the file is there even when it is too large to read (a big lockfile); absent: what `read` finds */
  has?(path: string): boolean;
}

/** What a builder adds to a manifest: its prepare steps, the environment of the version's processes, a default web. */
export interface BuildPlan {
  record: BuildRecord;
  /** prepare commands, run in order in the version directory */
  steps: string[];
  /** the `web` command when neither a Procfile nor enjin.yaml names one; null with `noDefaultWeb` saying why */
  defaultWeb: string | null;
  noDefaultWeb: string | null;
}

const PYTHON_FILES = ['requirements.txt', 'pyproject.toml', 'Pipfile'] as const;

function has(files: RootFiles, name: string): boolean {
  return files.has ? files.has(name) : files.read(name) !== null;
}

/** The builder a package's root files call for, or null when none fits (then the manifest must say what to run). */
export function detectBuilder(files: RootFiles): { builder: BuilderName; reason: string } | null {
  if (has(files, 'package.json')) return { builder: 'node', reason: 'package.json found' };
  const py = PYTHON_FILES.filter((f) => has(files, f));
  if (py.length) return { builder: 'python', reason: `${py.join(', ')} found` };
  // With a Procfile the site has its own server: there is nothing for the static builder to do.
  if (has(files, 'index.html') && !has(files, 'Procfile')) return { builder: 'static', reason: 'index.html found and no package.json, requirements.txt, pyproject.toml, Pipfile or Procfile' };
  return null;
}

/** The plan of a named builder for these files; `reason` says why that builder was chosen. */
export function planBuild(builder: BuilderName, reason: string, files: RootFiles): BuildPlan {
  if (builder === 'node') return nodePlan(reason, files);
  if (builder === 'python') return pythonPlan(reason, files);
  return {
    record: { builder, reason, paths: [], pathEnv: {} },
    steps: [],
    defaultWeb: `node ${BUILD_DIR}/static-server.cjs`,
    noDefaultWeb: null,
  };
}

interface PackageJson {
  scripts?: Record<string, unknown>;
}

function readPackageJson(files: RootFiles): PackageJson {
  try {
    const parsed = JSON.parse(files.read('package.json') ?? '{}') as unknown;
    return parsed && typeof parsed === 'object' ? (parsed as PackageJson) : {};
  } catch {
    // npm itself reports a broken package.json during the install, with its own message: no second guess here.
    return {};
  }
}

function nodePlan(reason: string, files: RootFiles): BuildPlan {
  // The lockfile says which installer the app was locked with; the script falls back to npm if that tool is missing.
  const [installer, lockfile] = has(files, 'package-lock.json') || has(files, 'npm-shrinkwrap.json')
    ? ['npm-ci', has(files, 'package-lock.json') ? 'package-lock.json' : 'npm-shrinkwrap.json']
    : has(files, 'yarn.lock') ? ['yarn', 'yarn.lock']
    : has(files, 'pnpm-lock.yaml') ? ['pnpm', 'pnpm-lock.yaml']
    : ['npm-install', null];
  const pkg = readPackageJson(files);
  const scripts = pkg.scripts && typeof pkg.scripts === 'object' ? pkg.scripts : {};
  const steps = [`sh ${BUILD_DIR}/node.sh ${installer}`];
  if (typeof scripts.build === 'string') steps.push('npm run build');
  const start = typeof scripts.start === 'string' || has(files, 'server.js');
  const why = lockfile ? `${reason}, ${lockfile} → ${installer === 'npm-ci' ? 'npm ci' : `${installer} install --frozen-lockfile`}` : `${reason}, no lockfile → npm install`;
  return {
    // node_modules/.bin first: the commands of the app's dependencies run by name, as under `npm run`.
    record: { builder: 'node', reason: why, paths: ['node_modules/.bin'], pathEnv: {} },
    steps,
    defaultWeb: start ? 'npm start' : null,
    noDefaultWeb: start ? null : 'package.json has no "start" script and there is no server.js, so there is no default web command; add a "start" script, a Procfile ("web: node app.js") or services.web.command in enjin.yaml',
  };
}

function pythonPlan(reason: string, files: RootFiles): BuildPlan {
  const source = has(files, 'requirements.txt') ? 'requirements' : has(files, 'Pipfile') ? 'pipfile' : 'pyproject';
  const steps = [`sh ${BUILD_DIR}/python.sh ${source}`];
  let why = `${reason} → a virtualenv in .venv, pip install`;
  if (has(files, 'manage.py')) {
    // Whether STATIC_ROOT is set is only known by asking Django itself, at build time: the step checks and says so.
    steps.push(`sh ${BUILD_DIR}/collectstatic.sh`);
    why += '; manage.py found → collectstatic when STATIC_ROOT is set';
  }
  return {
    record: { builder: 'python', reason: why, paths: ['.venv/bin'], pathEnv: { VIRTUAL_ENV: '.venv' } },
    steps,
    defaultWeb: null,
    noDefaultWeb: 'a Python app has no default web command; add a Procfile ("web: gunicorn app:app") or services.web.command in enjin.yaml',
  };
}
