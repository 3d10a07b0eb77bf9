// The commands of enjin.yaml: `prepare`, `build` (a builder and its extra steps) and `release`, each read with the
// validator's problem reporting (line and column).
import { isMap, isScalar, isSeq, type Node, type YAMLMap } from 'yaml';
import { describe, quoteHint } from './manifest-wording.ts';
import { BUILD_CHOICES, BUILD_KEYS, type BuildSetting } from './manifest-rules.ts';
import type { Entry } from './manifest-validator.ts';

/** What reading commands needs of the validator. */
export interface CommandsHost {
  problem(node: Node | null, fallback: Node | null, path: string, message: string): void;
  entries(map: YAMLMap, path: string, allowed: readonly string[] | null): Entry[];
  deref(node: unknown, path: string): Node | null;
}

/** `release: python manage.py migrate`: one command, run once per deploy before instances start. */
export function readRelease(h: CommandsHost, e: Entry): string | null {
  const v = e.value;
  if (!isScalar(v) || typeof v.value !== 'string' || v.value.trim() === '' || v.value.includes('\0')) {
    h.problem(v, e.anchor, 'release', `must be one command, run once per deploy before instances start, e.g. "release: python manage.py migrate" (got ${describe(v)}${quoteHint(v)})`);
    return null;
  }
  return v.value.trim();
}

/** `build: node` (or python, static, none), or `build: { builder: node, steps: [npm run extra] }`. */
export function readBuildSetting(h: CommandsHost, e: Entry): BuildSetting | null {
  const v = e.value;
  const choices = BUILD_CHOICES.join(', ');
  if (isScalar(v) && typeof v.value === 'string') {
    if (!(BUILD_CHOICES as readonly string[]).includes(v.value)) {
      h.problem(v, e.anchor, 'build', `must name a builder (${choices}) or be a map { builder, steps } (got ${describe(v)})`);
      return null;
    }
    return { builder: v.value as BuildSetting['builder'], steps: [] };
  }
  if (!isMap(v)) {
    h.problem(v, e.anchor, 'build', `must name a builder (${choices}) or be a map { builder, steps } (got ${describe(v)})`);
    return null;
  }
  const setting: BuildSetting = { builder: null, steps: [] };
  for (const item of h.entries(v, 'build', BUILD_KEYS)) {
    if (item.key === 'builder') {
      const b = item.value;
      if (!isScalar(b) || typeof b.value !== 'string' || !(BUILD_CHOICES as readonly string[]).includes(b.value)) {
        h.problem(b, item.anchor, 'build.builder', `must be one of ${choices} (got ${describe(b)})`);
      } else setting.builder = b.value as BuildSetting['builder'];
    } else {
      setting.steps = readCommands(h, item, 'build.steps');
    }
  }
  return setting;
}

/** A command or a list of commands (prepare, build.steps). */
export function readCommands(h: CommandsHost, e: Entry, key: string): string[] {
  const v = e.value;
  if (isScalar(v) && v.value === null) return [];
  const items: Array<{ node: Node | null; path: string }> = [];
  if (isSeq(v)) v.items.forEach((item, i) => items.push({ node: h.deref(item, `${key}[${i}]`), path: `${key}[${i}]` }));
  else items.push({ node: v, path: key });
  const out: string[] = [];
  for (const { node, path } of items) {
    if (!isScalar(node) || typeof node.value !== 'string' || node.value.trim() === '') {
      const what = path === key ? 'a command or a list of commands' : 'a non-empty command';
      h.problem(node, e.anchor, path, `must be ${what} (got ${describe(node)}${quoteHint(node)})`);
      continue;
    }
    out.push(node.value.trim());
  }
  return out;
}
