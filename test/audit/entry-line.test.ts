/**
 * The appender writes an entry's line with a template when it can (audit/entry.ts): the line
 * must be, byte for byte, the JSON.stringify of the entry the log format defines, whatever
 * the decision holds (strings JSON escapes, non-ASCII, lone surrogates, odd numbers, null
 * parts, objects of another shape or with a toJSON), so old and new entries verify alike.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { sign } from 'node:crypto';
import { encodeEntry, type Decided } from '../../audit/entry.ts';
import { storedFingerprint } from '../../audit/fingerprint.ts';
import { JWS_HEADER } from '../../spiffe/fingerprint.ts';
import { signedDecisions } from './decisions.ts';

/** The entry as docs/audit.md defines it, written by JSON.stringify. */
function definedLine(seq: number, prev: string, d: Decided): string {
  const fingerprint = storedFingerprint(d.fingerprint, d, d.fingerprintClaims);
  const { time, trace_id, request_id, service, caller, user, method, path, decision, status, rule, mode, reason, policy } = d;
  return JSON.stringify({ v: 2, seq, prev, time, trace_id, request_id, service, caller, user, method, path, decision, status, rule, mode, reason, policy, fingerprint });
}

// Mostly what JSON writes as is, sometimes a character it escapes or one beyond ASCII.
const text = fc.oneof(
  { arbitrary: fc.string({ unit: fc.constantFrom(...'/abc-_.:~%?!#[]{}*+ 09AZ') }), weight: 12 },
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('"', '\\', '\u007f', '\u0000', '\n', '\u2028', '\ud800', 'é', '𝄞'),
);
const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(1e21, -0, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY));
/** Objects JSON.stringify writes otherwise than their documented keys would say. */
const oddly = (o: Record<string, unknown>): unknown[] => [
  { ...o, extra: 'x' },
  Object.fromEntries(Object.entries(o).reverse()),
  Object.fromEntries(Object.entries(o).map(([key, value], i) => [key, i === 0 ? undefined : value])),
  { ...o, toJSON: () => 'replaced' },
  [o],
  'a string',
];
const odd = (o: Record<string, unknown>) => fc.constantFrom(...oddly(o));

const { decided, callerKey } = await signedDecisions(4);

/** `d` with a fingerprint its caller signed (as JSON.stringify writes the claims) over these values: it is stored reduced, whatever they are. */
function signedFor(d: Decided, values: { id: string; service: string; method: string; path: string; jti: string; ath: string }): Decided {
  const { iat, exp } = d.fingerprintClaims!;
  const claims = { iss: values.id, sub: values.id, aud: values.service, htm: values.method, htu: values.path.split('?')[0], iat, exp, jti: values.jti, ath: values.ath };
  const input = `${JWS_HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const fingerprint = `${input}.${sign('sha256', Buffer.from(input), { key: callerKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  return {
    ...d, caller: { ...d.caller!, id: values.id }, user: { ...d.user!, token_sha256: values.ath }, service: values.service, method: values.method, path: values.path,
    fingerprint, fingerprintClaims: { iat, exp, jti: values.jti },
  };
}

test('an entry line is JSON.stringify of the entry, for any decision', () => {
  const caller = fc.record({ id: text, serial: text, cert: text });
  const user = fc.record({ claims: fc.oneof(fc.jsonValue(), fc.object(), fc.constant({ toJSON: (key: string) => key })), token_sha256: text });
  const policy = fc.record({ sha256: text });
  const fields: Record<string, fc.Arbitrary<unknown>> = {
    time: text, trace_id: text, request_id: text, service: text, method: text, path: text, decision: text, reason: text,
    status: number, rule: fc.option(text), mode: fc.option(text),
    caller: fc.oneof(fc.constant(null), caller, caller.chain(odd)),
    user: fc.oneof(fc.constant(null), user, user.chain(odd)),
    policy: fc.oneof(fc.constant(null), policy, policy.chain(odd)),
    fingerprint: fc.option(text),
  };
  // A decision as the sidecar fills it (its fingerprint reduced) with a few fields changed to anything.
  const decision = fc.record({
    base: fc.nat(3).map((i) => decided(i)),
    // Text after the signature: still reduced (the signed part is unchanged), the signature part stored as sent.
    tail: fc.option(text, { nil: undefined }),
    // The caller, user or policy as signed (the fingerprint stays reduced) in another shape, or other claims.
    reshaped: fc.option(fc.tuple(fc.constantFrom('caller', 'user', 'policy'), fc.nat(oddly({}).length - 1)), { nil: undefined }),
    claims: fc.option(fc.oneof(fc.jsonValue(), fc.object(), fc.constant({ toJSON: (key: string) => key })), { nil: undefined }),
    resigned: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 3 },
      { arbitrary: fc.record({ id: text, service: text, method: text, path: text, jti: text, ath: text }), weight: 1 },
    ),
    certificate: fc.option(fc.record({ serial: text, cert: text }, { requiredKeys: [] }), { nil: undefined }),
    changes: fc.array(fc.oneof(...Object.entries(fields).map(([key, value]) => value.map((v) => ({ [key]: v })))), { maxLength: 3 }).map((c) => Object.assign({}, ...c)),
  });
  fc.assert(
    fc.property(fc.nat(), fc.oneof(text, fc.base64String()), decision, (seq, prev, { base, tail, reshaped, claims, resigned, certificate, changes }) => {
      const d = { ...(resigned ? signedFor(base, resigned) : base), ...changes } as Decided;
      if (tail !== undefined) d.fingerprint += tail;
      if (claims !== undefined) d.user = { ...base.user!, claims: claims as Record<string, unknown> };
      if (certificate !== undefined) d.caller = { ...base.caller!, ...certificate };
      if (reshaped) Object.assign(d, { [reshaped[0]]: oddly(base[reshaped[0]] as Record<string, unknown>)[reshaped[1]] });
      assert.is(encodeEntry(seq, prev, d), definedLine(seq, prev, d));
    }),
    { numRuns: 10_000 },
  );
});

test('one string JSON escapes, in any field of an entry otherwise as the sidecar writes it (its fingerprint re-signed over it where it is signed)', () => {
  const plain = fc.string({ unit: fc.constantFrom(...'/abc-_.:~%?!#[]{}*+ 09AZ') });
  const escaped = fc.tuple(plain, fc.constantFrom('"', '\\', '\u007f', '\u0000', '\n', '\u2028', '\ud800', 'é', '𝄞'), plain).map((parts) => parts.join(''));
  const unsigned = ['time', 'trace_id', 'request_id', 'decision', 'reason', 'rule', 'mode', 'serial', 'cert', 'sha256', 'sig'] as const;
  const signed = ['id', 'service', 'method', 'path', 'jti', 'ath'] as const;
  fc.assert(
    fc.property(fc.nat(3), fc.constantFrom(...unsigned, ...signed), escaped, (i, field, value) => {
      const base = decided(i);
      const { iat, exp, jti } = base.fingerprintClaims!;
      const values = { id: base.caller!.id, service: base.service, method: base.method, path: base.path, jti, ath: base.user!.token_sha256 };
      let d: Decided = (signed as readonly string[]).includes(field) ? signedFor(base, { ...values, [field]: value }) : { ...base, fingerprintClaims: { iat, exp, jti } };
      if (field === 'serial' || field === 'cert') d = { ...d, caller: { ...d.caller!, [field]: value } };
      else if (field === 'sha256') d = { ...d, policy: { sha256: value } };
      else if (field === 'sig') d = { ...d, fingerprint: d.fingerprint + value };
      else if ((unsigned as readonly string[]).includes(field)) d = { ...d, [field]: value };
      assert.is(encodeEntry(7, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d), definedLine(7, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d));
    }),
    { numRuns: 2000 },
  );
});

test('what the appender remembers from the entries before never changes a line: fields that repeat, change and come back, plain or not, strings or not', () => {
  // Few values per field, so each entry repeats the one before in some fields and not in
  // others; among them values that are not plain and values equal to a plain one but for
  // their type (== but not ===), which must not be taken for it.
  const base = decided(0);
  const { iat, exp, jti } = base.fingerprintClaims!;
  const signedAs = (ath: string, method: string) => signedFor(base, { id: base.caller!.id, service: base.service, method, path: base.path, jti, ath });
  const signed = [signedAs(base.user!.token_sha256, 'GET'), signedAs(base.user!.token_sha256, 'G"ET'), signedAs('\n', 'GET'), signedAs('other', 'GET')];
  const entry = fc.record({
    signed: fc.constantFrom(...signed),
    time: fc.constantFrom(base.time, 'x\u2028', new String(base.time), { toString: () => base.time }),
    serial: fc.constantFrom(base.caller!.serial, 'é', '01'),
    decision: fc.constantFrom('allow', 'deny', 'al"low', { toString: () => 'allow' }, new String('allow')),
    status: fc.constantFrom(200, -0, 0, Number.NaN, '200', 403),
    rule: fc.constantFrom('read-card', null, 'read\\card'),
    sha256: fc.constantFrom('a'.repeat(64), 'b'.repeat(64), 1),
  });
  fc.assert(
    fc.property(fc.array(entry, { minLength: 2, maxLength: 12 }), (entries) => {
      entries.forEach((e, seq) => {
        const d = {
          ...e.signed, fingerprintClaims: { iat, exp, jti }, time: e.time, decision: e.decision, status: e.status, rule: e.rule,
          caller: { ...e.signed.caller!, serial: e.serial }, policy: { sha256: e.sha256 },
        } as unknown as Decided;
        assert.is(encodeEntry(seq, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d), definedLine(seq, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d));
      });
    }),
    { numRuns: 3000 },
  );
});

test('entries as the sidecar hands them over are written as JSON.stringify writes them, their fingerprints reduced', () => {
  for (let i = 0; i < 4; i++) {
    const d = decided(i);
    const line = encodeEntry(i, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d);
    assert.is(line, definedLine(i, 'K2lk/X9k+0wRRx0iQb8HL7X9yfq2Cl7UWRqoqXNfvq0=', d));
    assert.is(typeof JSON.parse(line).fingerprint, 'object');
  }
});

test.run();
