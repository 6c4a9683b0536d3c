/** `palisade compile` as a user runs it: a real process, real files. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { policyText } from '../compiler/backend/helpers.ts';

const BIN = path.resolve('bin/palisade.js');
let dir: string;
test.before(() => { dir = mkdtempSync(path.join(tmpdir(), 'palisade-compile-')); });
test.after(() => rmSync(dir, { recursive: true, force: true }));

function palisade(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

test('bad policies, malformed and sized to overflow a recursive compiler: one located diagnostic each on stderr, exit 2, no stack trace, nothing written', async () => {
  // One process for the whole refusal behaviour; the bad --emit value is another run beside it.
  writeFileSync(path.join(dir, 'bad.json'), policyText([{ id: 'a', effect: 'allow', when: 'request.method > 5' }]));
  writeFileSync(path.join(dir, 'broken.json'), '{ "palisade": 1,');
  const deepPath = '/' + Array.from({ length: 5000 }, (_, i) => `s${i}`).join('/');
  writeFileSync(path.join(dir, 'segments.json'), policyText([{ id: 'a', effect: 'allow', to: [{ paths: [deepPath] }] }]));
  writeFileSync(path.join(dir, 'nested.json'), policyText([]).replace('"rules": []', `"rules": [${'['.repeat(3200)}${']'.repeat(3200)}]`));
  const [r, badEmit] = await Promise.all([
    palisade('compile', 'bad.json', 'broken.json', 'missing.json', 'segments.json', 'nested.json', '--out', 'out'),
    palisade('compile', 'bad.json', '--emit', 'wat'),
  ]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^bad\.json:\d+:\d+: error: .+ \(at \/rules\/0\/when\)$/m);
  assert.match(r.stderr, /^broken\.json:1:\d+: error: invalid JSON/m);
  assert.match(r.stderr, /^missing\.json: error: cannot read policy: ENOENT$/m);
  assert.match(r.stderr, /^segments\.json:\d+:\d+: error: invalid path template '.+': more than 1024 segments \(at \/rules\/0\/to\/0\/paths\/0\)$/m);
  assert.match(r.stderr, /^nested\.json:\d+:\d+: error: invalid JSON: nested more than 64 levels deep$/m);
  assert.not.match(r.stderr, /\n\s+at /);
  assert.not.match(r.stderr, /internal error|Maximum call stack/);
  assert.not.ok(existsSync(path.join(dir, 'out')));
  assert.is(badEmit.code, 2);
});

test('a good policy: wasm + manifest in --out, warnings on stderr, --emit ir on stdout', async () => {
  const text = policyText([
    { id: 'read', effect: 'allow', from: ['spiffe://corp.test/ns/web/**'], to: [{ methods: ['GET'], paths: ['/items/{id}'] }] },
    { id: 'never', effect: 'allow', when: "'a' == 'b'" },
  ]);
  writeFileSync(path.join(dir, 'good.json'), text);
  const r = await palisade('compile', 'good.json', '--out', 'build', '--emit', 'ir');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /^program backend-test /);
  assert.match(r.stdout, /\/items\/\{\} → r0\[GET\]/);
  assert.match(r.stderr, /good\.json:\d+:\d+: warning: rule 'never' can never apply: its `when` is always false \(at \/rules\/1\)/);
  const wasm = readFileSync(path.join(dir, 'build/backend-test.wasm'));
  const manifest = JSON.parse(readFileSync(path.join(dir, 'build/backend-test.manifest.json'), 'utf8'));
  assert.is(manifest.name, 'backend-test');
  assert.is(manifest.wasm.sha256, createHash('sha256').update(wasm).digest('hex'));
  assert.is(manifest.source.sha256, createHash('sha256').update(text).digest('hex'));
  assert.equal(manifest.rules, { total: 2, live: 1 });
  assert.is(manifest.wasm.bytes, wasm.length);
  assert.ok(WebAssembly.validate(new Uint8Array(wasm)));
});

test.run();
