// Checks and readings of what API requests carry (tokens, ids, cursors, uploaded manifests), kept apart from the
// routes so every route applies the same rules.
import { EnjinError, invalid } from '../../core/errors.ts';
import { locateInYaml } from '../../core/yaml-locate.ts';

/** Ids (prefix_base32) and names (DNS labels) both fit this; anything else in a path is refused before a lookup. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const ID_RULE = 'letters, digits, dots, dashes and underscores, at most 128 characters';
export const CONTROL_CHARS = /[\x00-\x1f\x7f]/;

/** The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive (RFC 7235). */
export function bearerToken(header: string | undefined): string {
  const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)[ \t]+(\S+)[ \t]*$/.exec(header ?? '');
  return m && m[1].toLowerCase() === 'bearer' ? m[2] : '';
}

/** Gives details that carry a manifest path a file, line and column. */
export function withPositions(err: unknown, file: string, text: string): unknown {
  if (!(err instanceof EnjinError) || file === 'Procfile') return err;
  for (const d of err.details) {
    if (!d.path || d.line) continue;
    const pos = locateInYaml(text, d.path.split('.').map((k) => (/^\d+$/.test(k) ? Number(k) : k)));
    if (pos) Object.assign(d, { file, line: pos.line, column: pos.column });
  }
  return err;
}

/** A logs cursor is ours only if it maps instance ids to byte offsets; anything else is refused, not passed on. */
export function parseLogCursor(cursor: string): Record<string, number> {
  let parsed: unknown;
  try { parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString()); } catch { parsed = null; }
  const offsets: Record<string, number> = Object.create(null);
  const ok = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
    && Object.entries(parsed).every(([id, n]) => ID_PATTERN.test(id) && Number.isSafeInteger(n) && (n as number) >= -1 && ((offsets[id] = n as number), true));
  if (!ok) throw invalid('cursor is not one this API returned; start again without it');
  return offsets;
}

/** The name of the token each authenticated request came with: who made a release. */
const callers = new WeakMap<object, string>();

export function setCaller(req: object, name: string): void {
  callers.set(req, name);
}

export function callerOf(req: object): string {
  return callers.get(req) ?? 'unknown';
}
