// Builds hostile packages byte by byte (node-tar would refuse to write them): for upload tests.
import { gzipSync } from 'node:zlib';

function header(name: string, size: number, type = '0'): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write(type, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** A gzip'd tar with a valid enjin.yaml plus one entry at `evilPath`. */
export async function buildHostileTarball(evilPath: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  const add = (name: string, content: string) => {
    const data = Buffer.from(content);
    parts.push(header(name, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  };
  add('enjin.yaml', 'project: hello\nservices:\n  web:\n    command: node server.js\n');
  add(evilPath, 'gotcha\n');
  parts.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(parts));
}
