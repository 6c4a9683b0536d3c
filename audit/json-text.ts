/**
 * The appender writes its JSON (entry lines, the fingerprint claims it rebuilds) with
 * templates where it can: on V8 11 (Node 20) JSON.stringify costs ~100 ns per property, a
 * template a few. A template writes what JSON.stringify would only for values JSON writes as
 * they are; these tell which.
 */

/** Printable ASCII but `"` and `\`: what JSON.stringify writes as it is, between quotes. */
const PLAIN = /^[ !#-[\]-~]*$/;

/** Whether `value` is a string JSON.stringify writes as `"value"`. */
export function isPlain(value: unknown): value is string {
  return typeof value === 'string' && PLAIN.test(value);
}

/**
 * `isPlain` for one field, remembering the last value that passed: most fields repeat from one
 * entry to the next (SPIFFE IDs, serial, hashes, method, rule, the time within its second, the
 * path and jti the fingerprint's check has just tested), and `===` on the same string is a
 * pointer compare where the regex costs ~35 ns. Only a value that passed is remembered, and a
 * string equal to it is just as plain; one string per field is all it keeps.
 */
export class PlainField {
  #last = '';
  test(value: unknown): value is string {
    if (value === this.#last) return true;
    if (!isPlain(value)) return false;
    this.#last = value;
    return true;
  }
}

/** Whether `value` is a number JSON.stringify writes as `${value}` (every finite one: both are Number::toString). */
export function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

/**
 * Whether JSON.stringify writes `value` as an object of exactly `keys`, in that order, each
 * value read as the property it is: a non-null object with no toJSON (which could write
 * anything) and those own enumerable keys (any other would be written too, another order
 * would be kept).
 */
export function hasExactly(value: unknown, keys: readonly string[]): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { toJSON?: unknown }).toJSON === 'function') return false;
  const own = Object.keys(value);
  if (own.length !== keys.length) return false;
  for (let i = 0; i < keys.length; i++) if (own[i] !== keys[i]) return false;
  return true;
}
