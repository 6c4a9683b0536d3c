/**
 * The appender writes its JSON (entry lines, the fingerprint claims it rebuilds) with
 * templates where it can: on V8 11 (Node 20) JSON.stringify costs ~100 ns per property, a
 * template a few. A template writes what JSON.stringify would only for values JSON writes as
 * they are; these tell which, and remember it for values that come again.
 */

/** Printable ASCII but `"` and `\`: what JSON.stringify writes as it is, between quotes. */
const PLAIN = /^[ !#-[\]-~]*$/;

/** Whether `value` is a string JSON.stringify writes as `"value"`. */
export function isPlain(value: unknown): value is string {
  return typeof value === 'string' && PLAIN.test(value);
}

/**
 * `isPlain` for one field, remembering the last value that passed: for a value tested twice
 * per entry (the path and jti, by the fingerprint's check and then by the line) or one that
 * repeats (the time within its second), `===` on the same string is a pointer compare where
 * the regex costs ~35 ns. Only a value that passed is remembered, and a string equal to it
 * is just as plain; one string per field is all it keeps.
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

/**
 * A run of a line's template over values that repeat from entry to entry (the caller and
 * service, the rule that decided …), kept while the same values come again: the line V8
 * flattens when it is copied then holds one piece where it held a dozen, and the values are
 * not tested again. `write` tests them and returns undefined (nothing kept) when one is not
 * plain. Flattened on its first reuse, so values that change every entry cost nothing more.
 * Up to six primitive values; equal ones (`===`) write the same text.
 */
export class RepeatedText {
  #values: unknown[] = [];
  #text: string | undefined;
  #uses = 0;
  constructor(private readonly write: (a: any, b: any, c: any, d: any, e: any, f: any) => string | undefined) {}

  of(a: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown): string | undefined {
    const v = this.#values;
    if (this.#text !== undefined && a === v[0] && b === v[1] && c === v[2] && d === v[3] && e === v[4] && f === v[5]) {
      // Printable ASCII: latin1 both ways is a plain copy, into one flat string.
      if (++this.#uses === 2) this.#text = Buffer.from(this.#text, 'latin1').toString('latin1');
      return this.#text;
    }
    const text = this.write(a, b, c, d, e, f);
    if (text !== undefined) [this.#values, this.#text, this.#uses] = [[a, b, c, d, e, f], text, 1];
    return text;
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
