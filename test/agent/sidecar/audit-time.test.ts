/**
 * The audit entry's time, formatted once per second and completed per request, is exactly
 * what `Date#toISOString` writes, whatever the order of the times asked for.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { isoTime } from '../../../agent/sidecar/audit.ts';

const MAX_DATE_MS = 8.64e15; // ECMAScript's time value range

test('isoTime matches toISOString for any time, in any order', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -MAX_DATE_MS, max: MAX_DATE_MS }), { minLength: 1, maxLength: 20 }), (times) => {
      for (const ms of times) assert.is(isoTime(ms), new Date(ms).toISOString());
    }),
  );
});

test('isoTime matches toISOString across second boundaries, both ways', () => {
  const start = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
  for (let ms = start; ms < start + 2_030; ms++) assert.is(isoTime(ms), new Date(ms).toISOString());
  for (let ms = start + 2_030; ms >= start; ms -= 7) assert.is(isoTime(ms), new Date(ms).toISOString());
  for (const ms of [-1, 0, 999, 1000, -1000, -1001]) assert.is(isoTime(ms), new Date(ms).toISOString());
});

test.run();
