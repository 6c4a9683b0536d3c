import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { isoTime } from '../../platform/utc-time.ts';

// isoTime writes what Date.prototype.toISOString writes, for every time it is given.

const YEAR_10000 = Date.UTC(10_000, 0, 1);
const FIRST_OF_YEAR_0 = new Date(0).setUTCFullYear(0, 0, 1);

test('the same string as toISOString across years 0 to 9999 and beyond', () => {
  fc.assert(
    fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (ms) => {
      assert.is(isoTime(ms), new Date(ms).toISOString());
      assert.is(isoTime(new Date(ms)), new Date(ms).toISOString());
    }),
    { numRuns: 5_000 },
  );
  for (const ms of [0, -1, FIRST_OF_YEAR_0, FIRST_OF_YEAR_0 - 1, YEAR_10000, YEAR_10000 - 1, Date.UTC(2026, 11, 7, 17, 57, 18, 5)]) {
    assert.is(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
});

test('the same string for any times, in any order, and across second boundaries both ways (the second is cached)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -8.64e15, max: 8.64e15 }), { minLength: 1, maxLength: 20 }), (times) => {
      for (const ms of times) assert.is(isoTime(ms), new Date(ms).toISOString());
    }),
  );
  const start = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
  for (let ms = start; ms < start + 2_030; ms++) assert.is(isoTime(ms), new Date(ms).toISOString());
  for (let ms = start + 2_030; ms >= start; ms -= 7) assert.is(isoTime(ms), new Date(ms).toISOString());
  for (const ms of [-1, 0, 999, 1000, -1000, -1001]) assert.is(isoTime(ms), new Date(ms).toISOString());
});

test('an invalid date throws as toISOString does', () => {
  assert.throws(() => isoTime(Number.NaN), (err: unknown) => err instanceof RangeError);
  assert.throws(() => isoTime(new Date('not a date')), (err: unknown) => err instanceof RangeError);
});

test.run();
