// Parses and validates enjin.yaml into a Manifest, reporting every problem at once with its line and column.
import { LineCounter, parseDocument, visit } from 'yaml';
import type { Manifest } from './model.ts';
import { manifestInvalid, MANIFEST_FILE, type ManifestParts } from './manifest-rules.ts';
import { Validator } from './manifest-validator.ts';
import { yamlMessage } from './manifest-wording.ts';

export * from './manifest-rules.ts';

/** Every hostname the manifest routes, in service order. */
export function manifestHostnames(m: Manifest): string[] {
  return Object.values(m.services).flatMap((s) => s.hostnames);
}

export function parseManifest(text: string, file = MANIFEST_FILE): Manifest {
  return readManifestText(text, file, null).manifest;
}

/**
 * enjin.yaml as part of a package with a Procfile or a builder: `project` may be left out (`project` is used), and
 * `services` and their commands too; the caller completes and checks them.
 */
export function parseManifestParts(text: string, file: string, project: string): ManifestParts {
  return readManifestText(text, file, project);
}

function readManifestText(text: string, file: string, lenientProject: string | null): ManifestParts {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const v = new Validator(file, lines, doc, lenientProject);

  // A broken document yields a best-effort tree; validating it would add confusing follow-on problems.
  if (doc.errors.length) {
    for (const e of doc.errors) v.problemAt(e.pos[0], '', yamlMessage(e.code, e.message));
    throw manifestInvalid(file, v.problems);
  }
  // No command, variable or name can carry a NUL, and the store refuses one in text: say so here, with its place.
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'string' && node.value.includes('\0')) v.problem(node, null, '', 'contains a NUL character (\\0); remove it');
    },
  });
  const manifest = v.manifest(doc.contents);
  if (v.problems.length || !manifest) throw manifestInvalid(file, v.problems);
  return { manifest, build: v.build, prepareGiven: v.prepareGiven, commandless: v.commandless, commandAt: v.commandAt, top: { line: 1, column: 1 } };
}
