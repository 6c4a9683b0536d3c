import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { schema } from '../../../compiler/frontend/schema.ts';
import { errorsOf, policyText, positionOf, SERVICE } from './helpers.ts';

test('the published schema is a valid draft 2020-12 schema with an $id and descriptions', () => {
  const ajv = new Ajv2020({ strict: true });
  assert.ok(ajv.validateSchema(schema));
  assert.match(schema.$id, /^https:\/\//);
  for (const key of ['palisade', 'name', 'service', 'mode', 'rules'] as const) {
    assert.type((schema.properties[key] as { description?: string }).description, 'string', key);
  }
});

test('schema violations point at the offending value with its JSON pointer', () => {
  const text = policyText([{ id: 'r', effect: 'permit' }], { palisade: 2, mode: 'enforcing', name: 'Card' });
  const errors = errorsOf(text);
  const where = (pointer: string) => errors.find((e) => e.span.pointer === pointer);
  assert.match(where('/palisade')?.message ?? '', /must be 1/);
  assert.match(where('/name')?.message ?? '', /lowercase letters, digits and '-'/);
  assert.match(where('/mode')?.message ?? '', /must be one of "enforce", "dry-run"/);
  assert.match(where('/rules/0/effect')?.message ?? '', /must be one of "allow", "deny"/);
  const at = positionOf(text, '"permit"');
  assert.equal([where('/rules/0/effect')?.span.line, where('/rules/0/effect')?.span.col], [at.line, at.col]);
});

test('unknown properties are errors at the key, with a suggestion', () => {
  const text = policyText([{ id: 'r', effect: 'allow', whne: 'true', to: [{ method: ['GET'] }] }]);
  const errors = errorsOf(text);
  const whne = errors.find((e) => e.span.pointer === '/rules/0/whne');
  assert.match(whne?.message ?? '', /unknown property 'whne'; did you mean 'when'\?/);
  assert.equal([whne?.span.line, whne?.span.col], Object.values(positionOf(text, '"whne"')));
  assert.match(errors.find((e) => e.span.pointer === '/rules/0/to/0/method')?.message ?? '', /did you mean 'methods'/);
});

test('missing, mistyped and empty values', () => {
  const text = JSON.stringify({ palisade: 1, name: 'x', rules: [{ id: 'r', effect: 'allow', from: [], when: true, inject: { a: 1 } }] });
  const messages = errorsOf(text).map((e) => `${e.span.pointer} ${e.message}`);
  assert.ok(messages.includes(" missing required property 'service'"), messages.join('\n'));
  assert.ok(messages.includes('/rules/0/from must not be empty (omit it instead)'), messages.join('\n'));
  assert.ok(messages.includes('/rules/0/when must be a string, not a boolean'), messages.join('\n'));
  assert.ok(messages.includes('/rules/0/inject/a must be a string, not a number'), messages.join('\n'));
  assert.ok(errorsOf(JSON.stringify([SERVICE])).some((e) => e.message === 'must be an object, not an array'));
});

test('every schema error is reported, not just the first', () => {
  const rules = Array.from({ length: 5 }, (_, i) => ({ id: `r${i}`, effect: 'nope' }));
  assert.is(errorsOf(policyText(rules)).length, 5);
});

test.run();
