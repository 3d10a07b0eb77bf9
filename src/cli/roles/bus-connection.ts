// How a cluster role reaches the bus: NATS (TLS and credentials passed through), wrapped so that what this process
// sends is signed with its identity and, with a key ring, what it receives is checked against admitted keys.
import type { KeyObject } from 'node:crypto';
import type { Bus } from '../../bus/bus.ts';
import { NatsBus } from '../../bus/nats.ts';
import { SignedBus, type KeyRing } from '../../bus/signing.ts';

export interface BusConnectionOptions {
  /** nats://[user:password@]host:4222 or tls://…; several separated by commas */
  url: string;
  tlsCaFile?: string;
  credsFile?: string;
  /** the client name NATS monitoring shows */
  name: string;
  /** signs what this process sends (a node signs as its node id) */
  identity: { id: string; privateKey: KeyObject; publicKeyB64?: string };
  /** send the public key with every message (nodes: a controller recovering from the nodes may admit them again) */
  presentKey?: boolean;
  /** checks what it receives; null: accepted with the sender they claim (nodes: ring 0 admits keys, not ring 1) */
  keyring: KeyRing | null;
}

export async function connectBus(opts: BusConnectionOptions): Promise<Bus> {
  const nats = await NatsBus.connect({ url: opts.url, tlsCaFile: opts.tlsCaFile, credsFile: opts.credsFile, name: opts.name });
  return new SignedBus(nats, { identity: opts.identity, keyring: opts.keyring, presentKey: opts.presentKey });
}
