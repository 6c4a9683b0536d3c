/**
 * One audit entry per decision: who called what, as whom, on whose behalf, what was
 * decided by which rule of which policy, and the caller's own signature over the request.
 * Stored as one JSON line; the leaf of the Merkle tree is exactly that line's bytes.
 * Nothing secret goes in: no bearer token (its claims and hash only), no query values.
 */
import { plain, storedFingerprint, type StoredFingerprint } from './fingerprint.ts';
import { PlainField, RepeatedText, hasExactly, isFiniteNumber, isPlain } from './json-text.ts';

/** What the sidecar knows about a decision; `seq` and `prev` are added by the log. */
export interface Decided {
  /** ISO 8601, when the decision was made. */
  time: string;
  trace_id: string;
  request_id: string;
  /** Our SPIFFE ID: the service the request was for. */
  service: string;
  /** The caller's SVID: SPIFFE ID, serial, and the SHA-256 of its DER (the certificate is in `certs/`). Null: none verified. */
  caller: { id: string; serial: string; cert: string } | null;
  /** The identity context: the verified token's claims and its hash (base64url SHA-256, the fingerprint's `ath`). */
  user: { claims: Record<string, unknown>; token_sha256: string } | null;
  method: string;
  /** The path with query values dropped (keys kept). */
  path: string;
  decision: string;
  /** The status the decision implies (200 forwarded, 401, 403, 503 …), not the application's. */
  status: number;
  rule: string | null;
  mode: string | null;
  reason: string;
  policy: { sha256: string } | null;
  /** The verified fingerprint JWS, as the caller sent it. Null when the request was refused before it verified. */
  fingerprint: string | null;
  /** Its claims as the sidecar verified them, if at hand: spares decoding the JWS again (not stored: `fingerprint` says it all). */
  fingerprintClaims?: { iat: number; exp: number; jti: string };
}

/** The version new entries are written in; verify reads every version (docs/audit.md, "Versions"). */
export const ENTRY_VERSION = 2 as const;

export interface AuditEntry extends Omit<Decided, 'fingerprint' | 'fingerprintClaims'> {
  /** 1: the fingerprint is always the JWS as sent; 2: it may be stored reduced (audit/fingerprint.ts). */
  v: 1 | 2;
  /** Position in the log, from 0. */
  seq: number;
  /** base64 leaf hash of entry seq − 1 ('' for the first): edits show at the very next entry. */
  prev: string;
  fingerprint: StoredFingerprint | null;
}

/** The entry line (v2) of `decided` at `seq`, after the entry whose leaf hash is `prev`: JSON.stringify of the entry. */
export function encodeEntry(seq: number, prev: string, d: Decided): string {
  const fingerprint = storedFingerprint(d.fingerprint, d, d.fingerprintClaims);
  return plainLine(seq, prev, d, fingerprint) ?? JSON.stringify(entryOf(seq, prev, d, fingerprint));
}

/** The entry: every field by name, in the documented order (and the type says when a field of Decided is missing here). */
function entryOf(seq: number, prev: string, d: Decided, fingerprint: StoredFingerprint | null): AuditEntry {
  return {
    v: ENTRY_VERSION, seq, prev, time: d.time, trace_id: d.trace_id, request_id: d.request_id, service: d.service, caller: d.caller, user: d.user,
    method: d.method, path: d.path, decision: d.decision, status: d.status, rule: d.rule, mode: d.mode, reason: d.reason, policy: d.policy, fingerprint,
  };
}

/**
 * What JSON.stringify(entryOf(…)) writes, by one template, for the entry the sidecar writes
 * nearly always: a verified caller, user and policy, a rule, a reduced fingerprint, and
 * every string one JSON writes as it is (audit/json-text.ts: SPIFFE IDs, hashes, base64,
 * ISO times, request ids and nearly every path). Else undefined, and JSON.stringify writes
 * it. JSON.stringify walks the entry's 30-odd properties at ~100 ns each (Node 20's V8);
 * the template, its checks and the flattening of its string when the line is copied cost
 * about half. The user's claims, which can be anything, still go through JSON.stringify.
 */
function plainLine(seq: number, prev: string, d: Decided, f: StoredFingerprint | null): string | undefined {
  const { caller: c, user: u, policy: p } = d;
  if (
    !(hasExactly(c, CALLER) && hasExactly(u, USER) && hasExactly(p, POLICY) && typeof f === 'object' && f !== null && hasExactly(f, FINGERPRINT)) ||
    !(isPlain(prev) && time.test(d.time) && isPlain(d.trace_id) && isPlain(d.request_id) && plain.path.test(d.path) && isFiniteNumber(f.iat) && isFiniteNumber(f.exp) && plain.jti.test(f.jti) && isPlain(f.sig))
  ) return undefined;
  const caller = callerRun.of(d.service, c.id, c.serial, c.cert);
  const user = userRun.of(u.token_sha256, d.method);
  const decision = decisionRun.of(d.decision, d.status, d.rule, d.mode, d.reason, p.sha256);
  const claims = claimsJson(u.claims);
  if (caller === undefined || user === undefined || decision === undefined || claims === undefined) return undefined;
  // One template, quotes and all: each piece is a node of the string V8 flattens when the line is copied.
  return `{"v":${ENTRY_VERSION},"seq":${seq},"prev":"${prev}","time":"${d.time}","trace_id":"${d.trace_id}","request_id":"${d.request_id}${caller}${claims}${user}${d.path}${decision}${f.iat},"exp":${f.exp},"jti":"${f.jti}","sig":"${f.sig}"}}`;
}

/** The time: the same string for every entry of its second. */
const time = new PlainField();

/** The line's runs between the fields that change every entry (audit/json-text.ts, RepeatedText). */
const callerRun = new RepeatedText((service, id, serial, cert) =>
  isPlain(service) && isPlain(id) && isPlain(serial) && isPlain(cert) ? `","service":"${service}","caller":{"id":"${id}","serial":"${serial}","cert":"${cert}"},"user":{"claims":` : undefined,
);
const userRun = new RepeatedText((token, method) => (isPlain(token) && isPlain(method) ? `,"token_sha256":"${token}"},"method":"${method}","path":"` : undefined));
const decisionRun = new RepeatedText((decision, status, rule, mode, reason, policy) =>
  isPlain(decision) && isFiniteNumber(status) && isPlain(rule) && isPlain(mode) && isPlain(reason) && isPlain(policy)
    ? `","decision":"${decision}","status":${status},"rule":"${rule}","mode":"${mode}","reason":"${reason}","policy":{"sha256":"${policy}"},"fingerprint":{"iat":`
    : undefined,
);

const CALLER = ['id', 'serial', 'cert'] as const;
const USER = ['claims', 'token_sha256'] as const;
const POLICY = ['sha256'] as const;
const FINGERPRINT = ['iat', 'exp', 'jti', 'sig'] as const;

/** The user's claims as JSON.stringify writes them inside the entry: the same, but for a toJSON, which is told its key. */
function claimsJson(claims: unknown): string | undefined {
  if (typeof claims === 'object' && claims !== null && typeof (claims as { toJSON?: unknown }).toJSON === 'function') return undefined;
  return JSON.stringify(claims) as string | undefined;
}

/** The path as it may be stored: query keys kept, their values dropped (`/a?x=1&y` → `/a?x=&y=`). */
export function redactPath(path: string): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  const keys = path.slice(q + 1).split('&').filter(Boolean).map((pair) => `${pair.split('=')[0]}=`);
  return `${path.slice(0, q)}?${keys.join('&')}`;
}
