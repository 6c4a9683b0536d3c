/**
 * A time in ISO 8601, UTC, exactly as `Date.prototype.toISOString` writes it, without ICU
 * and without formatting a whole date per call.
 * - V8's toISOString (and so `JSON.stringify` of a Date) asks ICU for the local time zone's
 *   offset, which it then does not print: the first call loads ICU's time-zone data, ~0.9 MB
 *   resident for the rest of the process (bench/startup.ts: the idle agent, whose ready line,
 *   health and filter status carry times). The UTC getters need no time zone.
 * - It also costs ~2 µs a call, a measurable share of an audited request, which writes a
 *   time into its audit entry and its decision line: the date and seconds are formatted once
 *   per second, the milliseconds appended.
 * Years outside 0–9999 (never a certificate's) and invalid dates go to toISOString, which
 * writes ±YYYYYY or throws a RangeError.
 */
let second = Number.NaN;
/** `YYYY-MM-DDTHH:MM:SS.` of `second`. */
let secondPrefix = '';

export function isoTime(time: Date | number): string {
  const ms = typeof time === 'number' ? time : time.getTime();
  const s = Math.floor(ms / 1000);
  if (s !== second) {
    const prefix = utcSecond(s * 1000);
    if (prefix === null) return new Date(ms).toISOString();
    second = s;
    secondPrefix = prefix;
  }
  const milli = ms - s * 1000;
  return `${secondPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** `YYYY-MM-DDTHH:MM:SS.` of a whole second in years 0–9999, else null (NaN included). */
function utcSecond(ms: number): string | null {
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return null;
  const two = (n: number) => String(n).padStart(2, '0');
  return `${String(year).padStart(4, '0')}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}T${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}.`;
}
