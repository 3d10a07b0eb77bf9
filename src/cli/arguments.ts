// Parsers of command-line values (ports, counts, sizes) that reject bad input with a coded error.
import { EnjinError } from '../core/errors.ts';

/** "512M", "2G", "1048576" → bytes (binary units). */
export function parseSize(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(String(value).trim());
  if (!m) throw new EnjinError('invalid_request', `${flag} must be a size such as 512M or 2G (got ${value})`);
  return Math.floor(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()));
}

export function toPort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new EnjinError('invalid_request', `"${v}" is not a port number`);
  return n;
}

export function toCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new EnjinError('invalid_request', `"${v}" is not a positive whole number`);
  return n;
}
