/**
 * The control plane's kept builds (control/builds.ts): the same documents are compiled once
 * and every later request gets that build; the same text under another file name is
 * compiled anew; a document that does not compile is not kept.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { buildLayers, buildStats } from '../../control/builds.ts';
import { policy, CARD } from './harness.ts';

// Named for this file alone: builds are kept per process, and other suites run in the same one.
const card = [{ file: 'kept.policy.json', text: policy('kept', CARD, ['/cards/{id}']) }];

test('the same documents are built once; the build handed out again is what compiling them makes', async () => {
  const start = buildStats();
  const [first, again] = await Promise.all([buildLayers(card), buildLayers(card)]);
  const third = await buildLayers(card.map((d) => ({ ...d })));
  assert.equal([buildStats().compiled - start.compiled, buildStats().reused - start.reused], [1, 2]);
  assert.ok(first.ok && again.ok && third.ok);
  for (const b of [again, third]) assert.equal([b.wasmBase64, b.manifest], [first.wasmBase64, first.manifest]);
  // What compiling them makes: the control plane's pushed filters are compared with compileLayers' in layers.test.ts.
  assert.is(first.manifest.wasm.sha256, createHash('sha256').update(Buffer.from(first.wasmBase64, 'base64')).digest('hex'));
  assert.equal(first.manifest.source.file, 'kept.policy.json');
  first.manifest.mode = 'dry-run';
  const kept = await buildLayers(card);
  assert.is(kept.ok && kept.manifest.mode, 'enforce', 'a caller cannot alter a kept build');
  assert.ok(buildStats().bytes > 0);
});

test('the same text under another file name is another build (the manifest names the file)', async () => {
  const start = buildStats();
  const other = await buildLayers([{ file: 'kept-too.policy.json', text: card[0]!.text }]);
  assert.is(buildStats().compiled - start.compiled, 1);
  assert.ok(other.ok && other.manifest.source.file === 'kept-too.policy.json');
});

test('a document that does not compile is not kept: it is compiled again, and fails again', async () => {
  const bad = [{ file: 'bad.policy.json', text: '{"palisade": 1, "name": "bad"' }];
  const start = buildStats();
  for (let i = 0; i < 2; i++) {
    const r = await buildLayers(bad);
    assert.ok(!r.ok && r.diagnostics.some((d) => d.span.file === 'bad.policy.json' && d.severity === 'error'));
  }
  assert.is(buildStats().compiled - start.compiled, 2);
  assert.is(buildStats().reused, start.reused);
});

test.run();
