/**
 * A time in ISO 8601, UTC, exactly as `Date.prototype.toISOString` writes it, without ICU.
 * V8's toISOString (and so `JSON.stringify` of a Date) asks ICU for the local time zone's
 * offset, which it then does not print: the first call loads ICU's time-zone data, ~0.9 MB
 * resident for the rest of the process (bench/startup.ts: the idle agent, whose ready line,
 * health and filter status carry times). The UTC getters need no time zone. Years outside
 * 0–9999 (never a certificate's) and invalid dates go to toISOString, which writes ±YYYYYY
 * or throws a RangeError.
 */
export function isoTime(time: Date | number): string {
  const date = typeof time === 'number' ? new Date(time) : time;
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return date.toISOString();
  const two = (n: number) => String(n).padStart(2, '0');
  return `${String(year).padStart(4, '0')}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}T${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}.${String(date.getUTCMilliseconds()).padStart(3, '0')}Z`;
}
