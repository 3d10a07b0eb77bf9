// Finds where a value sits in a YAML text, so errors found after parsing (a hostname another project owns) can still
// point at a line and column.
import { LineCounter, parseDocument, isMap, isSeq, isScalar, isPair, type Node as YamlNode } from 'yaml';

export function locateInYaml(text: string, path: Array<string | number>): { line: number; column: number } | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, keepSourceTokens: false });
  let node: unknown = doc.contents;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      node = pair?.value;
    } else if (isSeq(node)) {
      node = node.items[Number(key)];
    } else {
      return null;
    }
  }
  const range = (node as YamlNode | undefined)?.range;
  if (!range) return null;
  const pos = lineCounter.linePos(range[0]);
  return { line: pos.line, column: pos.col };
}
