// What makes a hostname acceptable to route by: one rule for manifests, the API and the route table.

/**
 * Why a hostname is not acceptable, or null if it is. Expects it trimmed and lower-cased.
 * Exact names may be single-label (`localhost`); a wildcard is `*.` plus at least two labels,
 * so `*.com` cannot claim a whole top-level domain.
 */
export function hostnameProblem(host: string): string | null {
  if (host === '') return 'must not be empty';
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(host)) return 'must be a bare hostname, without a scheme such as http://';
  if (host.includes('/')) return 'must be a bare hostname, without a path';
  if (host.includes(':') || host.startsWith('[')) {
    return /^\[?[0-9a-f:.]*\]?$/.test(host) && host.split(':').length > 2
      ? 'is an IPv6 address; routing is by hostname, so use a name'
      : 'must be a bare hostname, without a port (the router listens on its own ports)';
  }
  if (/[^\x00-\x7f]/.test(host)) return 'must be ASCII; write an internationalized name in its punycode (xn--) form';
  if (host.endsWith('.')) return 'must not end with a dot';
  let name = host;
  if (host.startsWith('*.')) {
    name = host.slice(2);
    if (name.split('.').length < 2) return 'a wildcard needs at least two labels after "*.", as in *.example.com';
  }
  if (name.includes('*')) return 'a wildcard is only allowed as the whole first label, as in *.example.com';
  if (host.length > 253) return 'must be at most 253 characters';
  const labels = name.split('.');
  for (const label of labels) {
    if (label === '') return 'must not contain empty labels (two dots in a row)';
    if (label.length > 63) return `label "${label.slice(0, 20)}…" is longer than 63 characters`;
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(label)) {
      return `label "${label}" may only hold letters, digits and inner dashes`;
    }
  }
  // A name whose last label is a number is an IPv4 address to URL parsers and resolvers, whatever the notation:
  // 127.0.0.1, 2130706433, 0x7f000001, 0177.0.0.1 (WHATWG URL "ends in a number").
  if (/^([0-9]+|0x[0-9a-f]*)$/.test(labels[labels.length - 1])) return 'is an IP address (in some notation); routing is by hostname, so use a name';
  if (host === 'localhost') return '"localhost" on its own names this machine, not an app; use a name under it such as app.localhost';
  return null;
}
