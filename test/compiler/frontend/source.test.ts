import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSource, spanAt, spanInString, nodeAt } from '../../../compiler/frontend/source.ts';

test('values are located by JSON pointer (1-based line and column)', () => {
  const text = '{\n  "a": [1, {"b~/c": "x"}]\n}';
  const { source } = parseSource('f.json', text);
  assert.ok(source);
  assert.equal(spanAt(source, '/a/1/b~0~1c'), { file: 'f.json', line: 2, col: 21, pointer: '/a/1/b~0~1c' });
  assert.equal(spanAt(source, '/a/0'), { file: 'f.json', line: 2, col: 9, pointer: '/a/0' });
  // A missing value points at its deepest existing parent.
  assert.equal(spanAt(source, '/a/7').col, 8);
});

test('invalid JSON gives line and column of the offending token', () => {
  const { source, diagnostics } = parseSource('f.json', '{\n  "a": [1,\n}');
  assert.is(source, null);
  assert.is(diagnostics.length, 1);
  assert.equal([diagnostics[0].span.line, diagnostics[0].span.col], [3, 1]);
  assert.match(diagnostics[0].message, /^invalid JSON: .*'\}'/);
});

test('comments, trailing commas and empty files are not JSON', () => {
  for (const text of ['{"a": 1, // c\n}', '{"a": [1,]}', '', '   ', '{"a": 1} x', "{'a': 1}"]) {
    const { source, diagnostics } = parseSource('f.json', text);
    assert.is(source, null, text);
    assert.is(diagnostics[0].severity, 'error');
  }
});

test('absurd nesting is an error, not a stack overflow', () => {
  const { source, diagnostics } = parseSource('f.json', '['.repeat(200_000) + ']'.repeat(200_000));
  assert.is(source, null);
  assert.is(diagnostics[0].message, 'invalid JSON: nested more than 64 levels deep');
});

test('duplicate keys are errors at the second key, at any depth', () => {
  const { source, diagnostics } = parseSource('f.json', '{"a": 1,\n "r": [{"id": 1, "id": 2}],\n "a": 3}');
  assert.is(source, null);
  assert.equal(
    diagnostics.map((d) => [d.span.line, d.span.col, d.span.pointer]),
    [[2, 18, '/r/0/id'], [3, 2, '/a']],
  );
  assert.match(diagnostics[1].message, /duplicate key 'a' \(first at line 1\)/);
});

test('a leading byte-order mark is tolerated and columns stay exact', () => {
  const { source } = parseSource('f.json', '\uFEFF{"a": "b"}');
  assert.ok(source);
  assert.equal(source.value, { a: 'b' });
  assert.is(spanAt(source, '/a').col, 8);
});

test('raw control characters in strings are invalid JSON, located exactly', () => {
  // An expression split over two lines by a raw line break, then a NUL (fuzz counterexample).
  const cases: [string, number, number, RegExp][] = [
    ['{\n  "when": "a\n\u0000 in b"}', 2, 13, /U\+000A in a string; write it as \\n$/],
    ['{"when": "a \u0000"}', 1, 13, /U\+0000 in a string; write it as \\u0000$/],
    ['{"a\tb": 1}', 1, 4, /U\+0009 .*\\t$/],
    ['{"a": ["x", "\u001f"]}', 1, 14, /U\+001F .*\\u001f$/],
    ['{"a": "x\ry"}', 1, 9, /U\+000D .*\\r$/],
  ];
  for (const [text, line, col, message] of cases) {
    const { source, diagnostics } = parseSource('f.json', text);
    assert.is(source, null, JSON.stringify(text));
    assert.equal([diagnostics[0].span.line, diagnostics[0].span.col], [line, col], JSON.stringify(text));
    assert.match(diagnostics[0].message, message);
    assert.match(diagnostics[0].message, /^invalid JSON: control character/);
  }
  // DEL and line separators are not control characters in JSON.
  assert.ok(parseSource('f.json', '{"a": "\u007f\u2028"}').source);
});

test('lines end at LF: a lone CR is whitespace, CRLF one line break', () => {
  const at = (text: string) => parseSource('f.json', text).diagnostics.map((d) => [d.span.line, d.span.col]);
  assert.equal(at('{"a": 1,\r "b": x}'), [[1, 16]]);
  assert.equal(at('{"a": 1,\r\n "b": x}'), [[2, 7]]);
  const { source } = parseSource('f.json', '{"a":\r1,\n"b": 2}');
  assert.ok(source);
  assert.equal(spanAt(source, '/b'), { file: 'f.json', line: 2, col: 6, pointer: '/b' });
});

test('offsets inside a string account for JSON escapes', () => {
  //           col: 1234567890123456789 0 1 2 34567890
  const text = '{"when": "a == \\"x\\u0041\\" && b"}';
  const { source } = parseSource('f.json', text);
  assert.ok(source);
  const node = nodeAt(source.root, '/when');
  assert.is(node.type, 'String');
  if (node.type !== 'String') return;
  assert.is(node.value, 'a == "xA" && b');
  const colOf = (i: number) => spanInString(source, node, i, '/when').col;
  assert.is(colOf(0), 11); // 'a'
  assert.is(colOf(5), 16); // '"' written as \"
  assert.is(colOf(6), 18); // 'x'
  assert.is(colOf(7), 19); // 'A' written as \u0041
  assert.is(colOf(13), text.indexOf('b"}') + 1); // 'b'
});

test.run();
