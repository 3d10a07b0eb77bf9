// How manifest problems are worded: what the user wrote, quoting hints, and "did you mean" for mistyped keys.
import { isMap, isScalar, isSeq, type Node } from 'yaml';

/** Words people reach for from other platforms, mapped to ours, for "did you mean". */
const SYNONYMS: Record<string, string> = {
  name: 'project', app: 'project', processes: 'services', environment: 'env',
  cmd: 'command', run: 'command', start: 'command', replicas: 'instances', scale: 'instances', count: 'instances',
  hosts: 'hostnames', domains: 'hostnames', healthcheck: 'health', path: 'http', url: 'http', port: 'tcp',
  exec: 'command', period: 'interval', every: 'interval', attempts: 'retries', threshold: 'retries',
  startperiod: 'grace', initialdelay: 'grace', restartpolicy: 'restart', maxretries: 'max_attempts',
  retry: 'max_attempts', delay: 'backoff', rollout: 'update', strategy: 'update', batch: 'parallelism', batchsize: 'parallelism',
  surge: 'max_surge', rollback: 'auto_rollback', canaries: 'canary', draintimeout: 'drain', graceperiod: 'drain',
};

export function yamlMessage(code: string, message: string): string {
  if (code === 'DUPLICATE_KEY') return 'this key appears twice in the same map; keep one';
  if (code === 'MULTIPLE_DOCS') return 'the file must hold a single YAML document; remove the extra "---"';
  return `YAML syntax: ${message}`;
}

/** What the user wrote, for "(got …)". */
export function describe(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a map';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    if (node.value === null || node.value === undefined) return 'nothing';
    if (typeof node.value === 'string') {
      const s = node.value.length > 60 ? `${node.value.slice(0, 60)}…` : node.value;
      return JSON.stringify(s);
    }
    return (node as { source?: string }).source || String(node.value);
  }
  return 'something else';
}

/** The hint for a value YAML typed as a number or boolean where a string was meant. */
export function quoteHint(node: Node | null): string {
  if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
    return `; YAML reads it as a ${typeof node.value}, so quote it: "${describe(node)}"`;
  }
  return '';
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

export function suggest(key: string, allowed: readonly string[]): string | null {
  const squash = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '');
  const k = squash(key);
  const same = allowed.find((a) => squash(a) === k);
  if (same) return same;
  const synonym = SYNONYMS[k];
  if (synonym && allowed.includes(synonym)) return synonym;
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const a of allowed) {
    const d = levenshtein(k, squash(a));
    if (d < bestDistance) [best, bestDistance] = [a, d];
  }
  return bestDistance <= (k.length <= 4 ? 1 : 2) ? best : null;
}
