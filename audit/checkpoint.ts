/**
 * Checkpoints: C2SP tlog-checkpoint bodies (origin, tree size, base64 root hash, then our
 * one extension line `time <unix ms>`) in a C2SP signed-note, signed with the agent's SVID
 * key as signature type 0x02 (ECDSA P-256, ASN.1 DER signature over the note text; key ID =
 * the first four bytes of SHA-256 of the key's DER SPKI). The certificate chain that
 * certifies the key is stored beside each checkpoint (`<size>.pem`), so the checkpoint
 * still verifies after the SVID has rotated and expired.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject, type X509Certificate } from 'node:crypto';

export interface TreeHead {
  /** `<SPIFFE ID>#<instance>`: who wrote the log, and which of its logs. */
  origin: string;
  size: number;
  root: Buffer;
  /** When the agent signed it (ms since the epoch). */
  time: number;
}

export interface Checkpoint extends TreeHead {
  /** The signed-note text: body, blank line, signature line. */
  text: string;
  body: string;
  keyId: Buffer;
  signature: Buffer;
}

export class CheckpointError extends Error {}

const SIGNATURE_LINE = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/;

/** The SPIFFE ID part of an origin. */
export function originIdentity(origin: string): string {
  return origin.split('#')[0]!;
}

export function checkpointBody(head: TreeHead): string {
  return `${head.origin}\n${head.size}\n${head.root.toString('base64')}\ntime ${head.time}\n`;
}

/** signed-note key ID for an ECDSA key: SHA-256(DER SPKI)[:4] (C2SP signed-note, type 0x02). */
export function keyIdOf(key: KeyObject): Buffer {
  // Per key object: the agent signs a checkpoint every 1,000 entries with the same SVID key,
  // and deriving and exporting its public key cost more than the signature.
  let id = keyIds.get(key);
  if (!id) {
    const spki = (key.type === 'public' ? key : createPublicKey(key)).export({ type: 'spki', format: 'der' });
    keyIds.set(key, (id = createHash('sha256').update(spki).digest().subarray(0, 4)));
  }
  return id;
}
const keyIds = new WeakMap<KeyObject, Buffer>();

export function signCheckpoint(head: TreeHead, privateKey: KeyObject): string {
  const body = checkpointBody(head);
  const signature = sign('sha256', Buffer.from(body), privateKey); // DER, as transparency-dev's witness writes it
  return `${body}\n\u2014 ${head.origin} ${Buffer.concat([keyIdOf(privateKey), signature]).toString('base64')}\n`;
}

/** Parses a checkpoint strictly; any deviation from the format is a CheckpointError. */
export function parseCheckpoint(text: string): Checkpoint {
  if (/[\x00-\x09\x0b-\x1f]/.test(text)) throw new CheckpointError('control characters in the note');
  const split = text.indexOf('\n\n');
  if (split < 0 || !text.endsWith('\n')) throw new CheckpointError('not a signed note (no blank line before the signatures)');
  const body = text.slice(0, split + 1);
  const lines = body.slice(0, -1).split('\n');
  const [origin, sizeText, rootText, timeLine] = lines;
  if (lines.length !== 4 || !origin || !sizeText || !rootText || !timeLine) throw new CheckpointError('the note is not a Palisade checkpoint (origin, size, root, time)');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) throw new CheckpointError(`tree size ${JSON.stringify(sizeText)} is not a decimal number`);
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== 32 || root.toString('base64') !== rootText) throw new CheckpointError('root hash is not 32 bytes of base64');
  const time = /^time (0|[1-9][0-9]{0,15})$/.exec(timeLine);
  if (!time) throw new CheckpointError('no time line');
  const signatures = text.slice(split + 2, -1).split('\n');
  const ours = signatures.map((l) => SIGNATURE_LINE.exec(l)).find((m) => m?.[1] === origin);
  if (!ours) throw new CheckpointError(`no signature by ${origin}`);
  const blob = Buffer.from(ours[2]!, 'base64');
  if (blob.length < 4 + 8) throw new CheckpointError('signature too short');
  return {
    origin,
    size: Number(sizeText),
    root,
    time: Number(time[1]),
    text,
    body,
    keyId: blob.subarray(0, 4),
    signature: blob.subarray(4),
  };
}

/**
 * Checks the signature with the leaf certificate stored beside the checkpoint, and that the
 * leaf is the SVID of the origin's SPIFFE ID (any other SVID of the trust domain is refused).
 * The chain itself is checked by the caller (verifyChainAt), at `time`.
 */
export function checkSignature(cp: Checkpoint, leaf: X509Certificate, leafId: string | null): void {
  const expected = originIdentity(cp.origin);
  if (leafId !== expected) throw new CheckpointError(`signed by ${leafId ?? 'a certificate without one SPIFFE ID'}, not by the log's agent ${expected}`);
  if (!keyIdOf(leaf.publicKey).equals(cp.keyId)) throw new CheckpointError('key ID does not match the certificate stored beside it');
  if (!verify('sha256', Buffer.from(cp.body), leaf.publicKey, cp.signature)) throw new CheckpointError('signature does not verify');
}
