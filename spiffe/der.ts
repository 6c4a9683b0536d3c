/**
 * Just enough DER to build an X.509-SVID from a fixed template, the agent's PKCS#10 request
 * (pki.ts, createCsr), and to split signed structures (CSR, certificate) into their to-be-signed bytes
 * and signature. The CA's hot issuance path uses this instead of a general ASN.1 library:
 * issuing is a template fill plus one native ECDSA signature, which is what makes ≥ 1,000
 * SVIDs/s possible; the agent, a long-lived process, would keep such a library loaded for a
 * request it makes every few minutes.
 */

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const sequence = (...items: Buffer[]) => tlv(0x30, ...items);
export const octetString = (bytes: Buffer) => tlv(0x04, bytes);
export const bitString = (bytes: Buffer) => tlv(0x03, Buffer.from([0]), bytes);
export const boolean = (value: boolean) => tlv(0x01, Buffer.from([value ? 0xff : 0]));
/** Context-specific tag [n]: constructed (explicit) or primitive (implicit). */
export const explicit = (n: number, inner: Buffer) => tlv(0xa0 | n, inner);
export const implicit = (n: number, bytes: Buffer) => tlv(0x80 | n, bytes);

/** A non-negative INTEGER from big-endian magnitude bytes. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  return tlv(0x02, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const bytes: number[] = [40 * parts[0]! + parts[1]!];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [part & 0x7f];
    for (let n = Math.floor(part / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift(0x80 | (n & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** The signature algorithm of every SVID, CSR and root: ecdsa-with-SHA256 (its OID). */
export const ECDSA_WITH_SHA256 = oid('1.2.840.10045.4.3.2');

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime after. Whole seconds. */
export function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

export interface Element {
  tag: number;
  /** The whole element, header included. */
  raw: Buffer;
  content: Buffer;
}

/** Reads one element at `offset`; throws on truncated or non-minimal-length input. */
export function read(buf: Buffer, offset = 0): Element {
  if (offset + 2 > buf.length) throw new Error('truncated DER');
  const tag = buf[offset]!;
  let length = buf[offset + 1]!;
  let header = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || offset + 2 + count > buf.length) throw new Error('bad DER length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[offset + 2 + i]!;
    if (length < 0x80) throw new Error('non-minimal DER length');
    header += count;
  }
  const end = offset + header + length;
  if (end > buf.length) throw new Error('truncated DER');
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + header, end) };
}

/** The elements of a constructed value, which must fill it exactly. */
export function children(parent: Element): Element[] {
  const out: Element[] = [];
  for (let offset = 0; offset < parent.content.length; ) {
    const child = read(parent.content, offset);
    out.push(child);
    offset += child.raw.length;
  }
  return out;
}

/**
 * Splits a signed structure (CertificationRequest, Certificate) into the signed bytes,
 * the signature algorithm OID and the signature. The input must be exactly one element.
 */
export function splitSigned(der: Buffer): { tbs: Buffer; algorithm: Buffer; signature: Buffer } {
  const outer = read(der);
  if (outer.tag !== 0x30 || outer.raw.length !== der.length) throw new Error('not a single DER SEQUENCE');
  const parts = children(outer);
  if (parts.length !== 3 || parts[2]!.tag !== 0x03 || parts[2]!.content[0] !== 0) throw new Error('not a signed structure');
  const algorithm = children(parts[1]!)[0];
  if (!algorithm || algorithm.tag !== 0x06) throw new Error('bad signature algorithm');
  return { tbs: parts[0]!.raw, algorithm: algorithm.raw, signature: parts[2]!.content.subarray(1) };
}
