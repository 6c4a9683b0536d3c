/**
 * The appender writes an entry's line with a template when it can (audit/entry.ts): the line
 * must be, byte for byte, the JSON.stringify of the entry the log format defines, whatever
 * the decision holds (strings JSON escapes, non-ASCII, lone surrogates, odd numbers, null
 * parts, objects of another shape or with a toJSON), so old and new entries verify alike.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { encodeEntry, type Decided } from '../../audit/entry.ts';
import { storedFingerprint } from '../../audit/fingerprint.ts';
import { signedDecisions } from './decisions.ts';

/** The entry as docs/audit.md defines it, written by JSON.stringify. */
function definedLine(seq: number, prev: string, d: Decided): string {
  const fingerprint = storedFingerprint(d.fingerprint, d, d.fingerprintClaims);
  const { time, trace_id, request_id, service, caller, user, method, path, decision, status, rule, mode, reason, policy } = d;
  return JSON.stringify({ v: 2, seq, prev, time, trace_id, request_id, service, caller, user, method, path, decision, status, rule, mode, reason, policy, fingerprint });
}

// Mostly what JSON writes as is, sometimes a character it escapes or one beyond ASCII.
const text = fc.oneof(
  { arbitrary: fc.string({ unit: fc.constantFrom(...'/abc-_.:~%?!#[]{}*+ 09AZ') }), weight: 6 },
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('"', '\\', '\u007f', '\u0000', '\n', '\u2028', '\ud800', 'é', '𝄞'),
);
const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(1e21, -0, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY));
/** Objects JSON.stringify writes otherwise than their documented keys would say. */
const odd = (o: Record<string, unknown>) =>
  fc.constantFrom<unknown>(
    { ...o, extra: 'x' },
    Object.fromEntries(Object.entries(o).reverse()),
    Object.fromEntries(Object.entries(o).map(([key, value], i) => [key, i === 0 ? undefined : value])),
    { ...o, toJSON: () => 'replaced' },
    [o],
    'a string',
  );

const { decided } = await signedDecisions(4);

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
    changes: fc.array(fc.oneof(...Object.entries(fields).map(([key, value]) => value.map((v) => ({ [key]: v })))), { maxLength: 3 }).map((c) => Object.assign({}, ...c)),
  });
  fc.assert(
    fc.property(fc.nat(), fc.oneof(text, fc.base64String()), decision, (seq, prev, { base, tail, changes }) => {
      const d = { ...base, ...(tail === undefined ? {} : { fingerprint: base.fingerprint + tail }), ...changes } as Decided;
      assert.is(encodeEntry(seq, prev, d), definedLine(seq, prev, d));
    }),
    { numRuns: 5000 },
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
