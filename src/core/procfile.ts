// Reads a Heroku-style Procfile ("name: command" per line) into a Manifest, for apps that have no enjin.yaml.
import type { ErrorDetail } from './errors.ts';
import { NAME_PATTERN, NAME_RULE } from './ids.ts';
import { manifestInvalid, PROTOTYPE_KEYS, STOP_TIMEOUT_DEFAULT } from './manifest.ts';
import type { Manifest, ServiceSpec } from './model.ts';

export const PROCFILE = 'Procfile';

export function parseProcfile(text: string, project: string, file = PROCFILE): Manifest {
  const problems: ErrorDetail[] = [];
  const problem = (line: number, column: number, message: string, path?: string): void => {
    problems.push({ file, ...(line ? { line, column } : {}), ...(path ? { path } : {}), message });
  };
  if (!NAME_PATTERN.test(project)) problem(0, 0, `project: "${project}" is not a valid project name: ${NAME_RULE}`, 'project');

  const services: Record<string, ServiceSpec> = {};
  let release: string | undefined;
  const seen = new Map<string, number>();
  let content = 0;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const n = i + 1;
    const indent = raw.length - raw.trimStart().length;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    content++;
    const colon = line.indexOf(':');
    if (colon < 0) {
      problem(n, indent + 1, 'expected "name: command", e.g. "web: node server.js"');
      return;
    }
    const name = line.slice(0, colon).trim();
    const after = line.slice(colon + 1);
    const command = after.trim();
    const commandColumn = indent + colon + 2 + (after.length - after.trimStart().length);
    if (!NAME_PATTERN.test(name)) {
      const hint = /_/.test(name) ? ' (use dashes instead of underscores)' : '';
      problem(n, indent + 1, `"${name}" is not a valid process name: ${NAME_RULE}${hint}`, name || undefined);
      return;
    }
    if (PROTOTYPE_KEYS.has(name)) {
      problem(n, indent + 1, `"${name}" is a reserved word; choose another process name`, name);
      return;
    }
    if (seen.has(name)) {
      problem(n, indent + 1, `"${name}" is already defined on line ${seen.get(name)}; each process name appears once`, name);
      return;
    }
    seen.set(name, n);
    if (command.includes('\0')) {
      problem(n, commandColumn, `"${name}" has a NUL character in its command; remove it`, name);
      return;
    }
    if (command === '') {
      problem(n, commandColumn, `"${name}" has no command after the colon`, name);
      return;
    }
    // Heroku's release phase: a command run once per deploy before instances start, not a process that keeps running.
    if (name === 'release') {
      release = command;
      return;
    }
    // Only `web` gets a port (and later a generated hostname), as on Heroku.
    services[name] = {
      name,
      command,
      instances: 1,
      listens: name === 'web',
      hostnames: [],
      health: null,
      env: {},
      stopTimeout: STOP_TIMEOUT_DEFAULT,
    };
  });
  if (content === 0) problem(1, 1, 'lists no processes; add a line such as "web: node server.js"');
  if (problems.length) throw manifestInvalid(file, problems);
  return { project, prepare: [], env: {}, services, ...(release ? { release } : {}) };
}
