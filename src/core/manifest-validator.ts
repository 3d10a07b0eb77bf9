// Walks a parsed enjin.yaml and checks every key, collecting each problem with its line and column.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node, type Pair, type YAMLMap } from 'yaml';
import type { ErrorDetail } from './errors.ts';
import { NAME_PATTERN, NAME_RULE } from './ids.ts';
import type { Manifest, ServiceSpec, ServiceTimeouts } from './model.ts';
import { hostnameProblem } from './hostnames.ts';
import { describe, quoteHint, suggest } from './manifest-wording.ts';
import { readBuildSetting, readCommands, readRelease } from './manifest-commands.ts';
import { healthNeedsPort, readDrain, readHealth, readRestart, readUpdate } from './manifest-policies.ts';
import { normalizeVolumePath, VOLUME_NAME_PATTERN, VOLUME_NAME_RULE, volumePathProblem, withProjectVolumes } from './volumes.ts';
import {
  ENV_KEY_PATTERN, INSTANCES_MAX, PROTOTYPE_KEYS, RESERVED_ENV, SERVICE_KEYS,
  SERVICE_TIMEOUTS_DEFAULT, SERVICE_TIMEOUTS_MAX, STOP_TIMEOUT_DEFAULT, TIMEOUT_KEYS, TOP_KEYS,
  type BuildSetting, type Place,
} from './manifest-rules.ts';

export interface Entry {
  key: string;
  keyNode: Node | null;
  value: Node | null;
  /** where to point when the value itself is missing or empty */
  anchor: Node | null;
}

interface HostnameUse {
  path: string;
  line: number;
}

export class Validator {
  readonly problems: ErrorDetail[] = [];
  private readonly hostnames = new Map<string, HostnameUse>();
  build: BuildSetting | null = null;
  prepareGiven = false;
  readonly commandless = new Map<string, Place>();
  readonly commandAt = new Map<string, Place>();

  /** lenientProject: the project name when the file may leave it out (then services and commands are optional too) */
  constructor(
    private readonly file: string,
    private readonly lines: LineCounter,
    private readonly doc: Document.Parsed,
    private readonly lenientProject: string | null = null,
  ) {}

  private placeOf(node: Node | null): Place {
    const { line, col } = this.lines.linePos(node?.range ? node.range[0] : 0);
    return { line: Math.max(line, 1), column: Math.max(col, 1) };
  }

  problemAt(offset: number, path: string, message: string): void {
    const { line, col } = this.lines.linePos(offset);
    this.problems.push({
      file: this.file,
      line: Math.max(line, 1),
      column: Math.max(col, 1),
      ...(path ? { path } : {}),
      message: path ? `${path}: ${message}` : message,
    });
  }

  problem(node: Node | null, fallback: Node | null, path: string, message: string): void {
    // An empty value (`key:`) has a zero-width range at the end of the line; the key is the better place to point.
    const empty = isScalar(node) && node.value === null && !(node as { source?: string }).source;
    const at = (!empty && node?.range) || fallback?.range || node?.range;
    this.problemAt(at ? at[0] : 0, path, message);
  }

  /** Aliases are followed so `env: *common` works; an alias to nothing is a problem. */
  deref(node: unknown, path: string): Node | null {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      const target = node.resolve(this.doc);
      if (!target) {
        this.problem(node, null, path, `alias *${node.source} refers to no anchor`);
        return null;
      }
      return target as Node;
    }
    return node as Node;
  }

  /** The entries of a map, with non-string keys reported; unknown keys are reported against `allowed`. */
  entries(map: YAMLMap, path: string, allowed: readonly string[] | null): Entry[] {
    const out: Entry[] = [];
    for (const pair of map.items as Pair<unknown, unknown>[]) {
      const keyNode = this.deref(pair.key, path);
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        this.problem(keyNode, map, path || '(top level)', 'keys must be plain names');
        continue;
      }
      const key = String(keyNode.value);
      const full = path ? `${path}.${key}` : key;
      const value = this.deref(pair.value, full);
      if (allowed && !allowed.includes(key)) {
        const near = suggest(key, allowed);
        const merge = key === '<<' ? '; YAML merge keys (<<) are not supported, repeat the keys instead' : '';
        const mean = near ? ` (did you mean "${near}"?)` : '';
        this.problem(keyNode, null, full, `unknown key${mean}; allowed here: ${allowed.join(', ')}${merge}`);
        continue;
      }
      out.push({ key, keyNode, value, anchor: keyNode });
    }
    return out;
  }

  manifest(root: unknown): Manifest | null {
    const top = this.deref(root, '');
    if (!isMap(top)) {
      this.problem(top, null, '', `the file must be a map with at least "project" and "services" (got ${describe(top)})`);
      return null;
    }
    const byKey = new Map(this.entries(top, '', TOP_KEYS).map((e) => [e.key, e]));

    const projectEntry = byKey.get('project');
    let project = this.lenientProject ?? '';
    if (projectEntry) project = this.name(projectEntry, 'project') ?? '';
    else if (this.lenientProject === null) this.problem(top, null, 'project', `is required: the project's name (${NAME_RULE})`);

    const prepareEntry = byKey.get('prepare');
    const prepare = prepareEntry ? readCommands(this, prepareEntry, 'prepare') : [];
    this.prepareGiven = prepareEntry !== undefined;
    const buildEntry = byKey.get('build');
    if (buildEntry) {
      this.build = readBuildSetting(this, buildEntry);
      if (prepareEntry && this.build && (this.build.builder !== 'none' || this.build.steps.length)) {
        this.problem(buildEntry.keyNode, null, 'build', `and prepare (line ${this.lineOf(prepareEntry.keyNode)}) are both given, but prepare replaces any builder; put your commands in build.steps to run them after the builder's, or remove build`);
      }
    }
    const envEntry = byKey.get('env');
    const env = envEntry ? this.env(envEntry, 'env') : {};
    const releaseEntry = byKey.get('release');
    const release = releaseEntry ? readRelease(this, releaseEntry) : null;
    const volumesEntry = byKey.get('volumes');
    const volumes = volumesEntry ? this.volumes(volumesEntry, 'volumes') : {};

    const services: Record<string, ServiceSpec> = {};
    const servicesEntry = byKey.get('services');
    if (!servicesEntry) {
      if (this.lenientProject === null) this.problem(top, null, 'services', 'is required: a map of service names to their settings, e.g. "web: { command: node server.js }"');
    } else if (!isMap(servicesEntry.value)) {
      this.problem(servicesEntry.value, servicesEntry.anchor, 'services', `must be a map of service names to their settings (got ${describe(servicesEntry.value)})`);
    } else {
      const list = this.entries(servicesEntry.value, 'services', null);
      if (list.length === 0 && servicesEntry.value.items.length === 0) {
        this.problem(servicesEntry.value, servicesEntry.anchor, 'services', 'must list at least one service');
      }
      for (const e of list) {
        const spec = this.service(e);
        if (spec) services[spec.name] = spec;
      }
    }
    const hasVolumes = Object.keys(volumes).length > 0;
    return { project, prepare, env, services: withProjectVolumes(services, volumes), ...(release ? { release } : {}), ...(hasVolumes ? { volumes } : {}) };
  }

  private name(e: Entry, path: string): string | null {
    const v = e.value;
    if (!isScalar(v) || typeof v.value !== 'string' || !NAME_PATTERN.test(v.value)) {
      this.problem(v, e.anchor, path, `must be a name: ${NAME_RULE} (got ${describe(v)})`);
      return null;
    }
    return v.value;
  }

  private env(e: Entry, path: string): Record<string, string> {
    const v = e.value;
    if (isScalar(v) && v.value === null) return {};
    if (!isMap(v)) {
      this.problem(v, e.anchor, path, `must be a map of variable names to values (got ${describe(v)})`);
      return {};
    }
    const out: Record<string, string> = {};
    for (const item of this.entries(v, path, null)) {
      const full = `${path}.${item.key}`;
      if (PROTOTYPE_KEYS.has(item.key)) {
        this.problem(item.keyNode, null, full, `is a reserved word (${[...PROTOTYPE_KEYS].join(', ')}); choose another variable name`);
        continue;
      }
      if (!ENV_KEY_PATTERN.test(item.key)) {
        this.problem(item.keyNode, null, full, 'is not a valid variable name: use letters, digits and underscores, not starting with a digit');
        continue;
      }
      if (RESERVED_ENV.has(item.key)) {
        this.problem(item.keyNode, null, full, 'is set by enjin for every instance that listens; remove it');
        continue;
      }
      const value = item.value;
      if (!isScalar(value) || value.value === null || value.value === undefined) {
        this.problem(value, item.anchor, full, `must be a string, number or boolean; write "" for an empty value (got ${describe(value)})`);
        continue;
      }
      // Numbers and booleans keep the spelling the user wrote: 0755 stays "0755", not "755".
      out[item.key] = typeof value.value === 'string' ? value.value : (value as { source?: string }).source || String(value.value);
    }
    return out;
  }

  private integer(e: Entry, path: string, min: number, max: number, unit: string): number | null {
    const v = e.value;
    if (!isScalar(v) || typeof v.value !== 'number' || !Number.isInteger(v.value) || v.value < min || v.value > max) {
      this.problem(v, e.anchor, path, `must be a whole number${unit} from ${min} to ${max} (got ${describe(v)})`);
      return null;
    }
    return v.value;
  }

  private service(e: Entry): ServiceSpec | null {
    const base = `services.${e.key}`;
    if (!NAME_PATTERN.test(e.key)) this.problem(e.keyNode, null, base, `is not a valid service name: ${NAME_RULE}`);
    else if (PROTOTYPE_KEYS.has(e.key)) this.problem(e.keyNode, null, base, `is a reserved word (${[...PROTOTYPE_KEYS].join(', ')}); choose another service name`);
    const v = e.value;
    if (!isMap(v)) {
      this.problem(v, e.anchor, base, `must be a map with at least a command, e.g. "command: node server.js" (got ${describe(v)})`);
      return null;
    }
    const byKey = new Map(this.entries(v, base, SERVICE_KEYS).map((x) => [x.key, x]));

    let command = '';
    const commandEntry = byKey.get('command');
    if (commandEntry) this.commandAt.set(e.key, this.placeOf(commandEntry.keyNode));
    if (!commandEntry && this.lenientProject !== null) {
      // the Procfile or the builder may give it; the caller says so if neither does
      this.commandless.set(e.key, this.placeOf(e.keyNode));
    } else if (!commandEntry) {
      this.problem(e.keyNode, null, base, 'needs a command: the shell command that starts the service, e.g. "command: node server.js"');
    } else {
      const c = commandEntry.value;
      if (!isScalar(c) || typeof c.value !== 'string' || c.value.trim() === '') {
        this.problem(c, commandEntry.anchor, `${base}.command`, `must be a non-empty shell command (got ${describe(c)}${quoteHint(c)})`);
      } else {
        command = c.value.trim();
      }
    }

    const instancesEntry = byKey.get('instances');
    const instances = instancesEntry ? this.integer(instancesEntry, `${base}.instances`, 0, INSTANCES_MAX, '') ?? 1 : 1;

    const hostnamesEntry = byKey.get('hostnames');
    const hostnames = hostnamesEntry ? this.hostnameList(hostnamesEntry, `${base}.hostnames`) : [];

    const healthEntry = byKey.get('health');
    const health = healthEntry ? readHealth(this, healthEntry, `${base}.health`, (offset) => this.lines.linePos(offset).line) : null;

    const portEntry = byKey.get('port');
    let port: boolean | null = null;
    if (portEntry) {
      const p = portEntry.value;
      if (!isScalar(p) || typeof p.value !== 'boolean') {
        const hint = isScalar(p) && typeof p.value === 'number' ? '; enjin assigns the port number and passes it in $PORT' : '';
        this.problem(p, portEntry.anchor, `${base}.port`, `must be true or false: whether the service listens on $PORT (got ${describe(p)})${hint}`);
      } else {
        port = p.value;
      }
    }

    const envEntry = byKey.get('env');
    const env = envEntry ? this.env(envEntry, `${base}.env`) : {};

    const stopEntry = byKey.get('stop_timeout');
    const stopTimeout = stopEntry ? this.integer(stopEntry, `${base}.stop_timeout`, 0, 300, ' of seconds') ?? STOP_TIMEOUT_DEFAULT : STOP_TIMEOUT_DEFAULT;

    const timeoutsEntry = byKey.get('timeouts');
    const timeouts = timeoutsEntry ? this.timeouts(timeoutsEntry, `${base}.timeouts`) : null;

    const volumesEntry = byKey.get('volumes');
    const volumes = volumesEntry ? this.volumes(volumesEntry, `${base}.volumes`) : {};

    if (port === false && portEntry) {
      const needs: string[] = [];
      if (hostnamesEntry && hostnames.length) needs.push(`hostnames (line ${this.lineOf(hostnamesEntry.keyNode)})`);
      if (healthEntry && healthNeedsPort(health)) needs.push(`an http or tcp health check (line ${this.lineOf(healthEntry.keyNode)})`);
      if (needs.length) {
        this.problem(portEntry.value, portEntry.anchor, `${base}.port`, `is false, but the service has ${needs.join(' and ')}, which need it to listen on $PORT; remove "port: false" or those settings`);
      }
    }
    const listens = port ?? (hostnames.length > 0 || healthNeedsPort(health) || e.key === 'web');
    const restart = readRestart(this, byKey.get('restart'), `${base}.restart`, listens);
    const updateEntry = byKey.get('update');
    const drainEntry = byKey.get('drain');

    // Returned even with problems recorded: parseManifest throws if there are any.
    const spec: ServiceSpec = { name: e.key, command, instances, listens, hostnames, health, env, stopTimeout, restart };
    // update and drain are written only when given: absent means the default, which readers fill (service-policies.ts).
    if (updateEntry) spec.update = readUpdate(this, updateEntry, `${base}.update`);
    if (drainEntry) spec.drain = readDrain(this, drainEntry, `${base}.drain`);
    if (timeouts !== null) spec.timeouts = timeouts;
    if (Object.keys(volumes).length) spec.volumes = volumes;
    return spec;
  }

  /** `volumes: { data: /data }`: volume names to the absolute paths the service's processes use them at. */
  private volumes(e: Entry, path: string): Record<string, string> {
    const v = e.value;
    if (isScalar(v) && v.value === null) return {};
    if (!isMap(v)) {
      this.problem(v, e.anchor, path, `must be a map of volume names to absolute paths, e.g. { data: /data } (got ${describe(v)})`);
      return {};
    }
    const out: Record<string, string> = {};
    for (const item of this.entries(v, path, null)) {
      const full = `${path}.${item.key}`;
      if (!VOLUME_NAME_PATTERN.test(item.key)) {
        this.problem(item.keyNode, null, full, `is not a valid volume name: ${VOLUME_NAME_RULE}`);
        continue;
      }
      const p = item.value;
      if (!isScalar(p) || typeof p.value !== 'string') {
        this.problem(p, item.anchor, full, `must be the absolute path the volume is used at, e.g. /data (got ${describe(p)})`);
        continue;
      }
      const why = volumePathProblem(p.value);
      if (why) {
        this.problem(p, item.anchor, full, `${why} (got ${describe(p)})`);
        continue;
      }
      out[item.key] = normalizeVolumePath(p.value);
    }
    return out;
  }

  /** `timeouts: { connect, header, idle }` in seconds; keys left out keep their defaults. */
  private timeouts(e: Entry, path: string): ServiceTimeouts | null {
    const v = e.value;
    if (isScalar(v) && v.value === null) return null;
    if (!isMap(v)) {
      this.problem(v, e.anchor, path, `must be a map of seconds, e.g. { connect: 5, header: 60, idle: 300 } (got ${describe(v)})`);
      return null;
    }
    const out = { ...SERVICE_TIMEOUTS_DEFAULT };
    for (const entry of this.entries(v, path, TIMEOUT_KEYS)) {
      const key = entry.key as keyof ServiceTimeouts;
      out[key] = this.integer(entry, `${path}.${key}`, 1, SERVICE_TIMEOUTS_MAX[key], ' of seconds') ?? SERVICE_TIMEOUTS_DEFAULT[key];
    }
    return out;
  }

  private lineOf(node: Node | null): number {
    return node?.range ? this.lines.linePos(node.range[0]).line : 0;
  }

  private hostnameList(e: Entry, path: string): string[] {
    const v = e.value;
    if (isScalar(v) && v.value === null) return [];
    if (!isSeq(v)) {
      this.problem(v, e.anchor, path, `must be a list of hostnames, e.g. [app.example.com, "*.app.example.com"] (got ${describe(v)})`);
      return [];
    }
    const out: string[] = [];
    v.items.forEach((item, i) => {
      const full = `${path}[${i}]`;
      const node = this.deref(item, full);
      if (!isScalar(node) || typeof node.value !== 'string') {
        this.problem(node, e.anchor, full, `must be a hostname (got ${describe(node)})`);
        return;
      }
      // DNS names are case-insensitive; the router matches the lower-cased Host header.
      const host = node.value.trim().toLowerCase();
      const why = hostnameProblem(host);
      if (why) {
        this.problem(node, e.anchor, full, `${why} (got ${describe(node)})`);
        return;
      }
      const line = this.lineOf(node);
      const seen = this.hostnames.get(host);
      if (seen) {
        this.problem(node, e.anchor, full, `"${host}" is already used by ${seen.path} (line ${seen.line}); each hostname routes to one service`);
        return;
      }
      this.hostnames.set(host, { path: full, line });
      out.push(host);
    });
    return out;
  }
}
