/**
 * `palisade compile --layer` and `palisade check --layer` as CI runs them, without a control
 * plane: the filter is the one `compileLayers` (what a control plane calls) builds from the
 * same files, byte for byte.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { compileLayers } from '../../compiler/index.ts';
import { palisade } from '../support/cli.ts';

const EXAMPLE = path.resolve('examples/layers');
const FILES = ['bank.layer.json', 'payments.layer.json', 'cards.policy.json'];
let dir: string;
test.before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'palisade-layers-'));
  cpSync(EXAMPLE, dir, { recursive: true });
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('compile --layer: the filter and manifest compileLayers makes of the same files, byte for byte', async () => {
  const r = await palisade(['compile', '--layer', 'bank.layer.json', '--layer', 'payments.layer.json', 'cards.policy.json', '--out', 'out'], { cwd: dir });
  assert.is(r.code, 0, r.stderr);
  const api = await compileLayers(FILES.map((file) => ({ file, text: readFileSync(path.join(dir, file), 'utf8') })));
  assert.ok(api.ok);
  assert.equal(new Uint8Array(readFileSync(path.join(dir, 'out/cards.wasm'))), api.wasm);
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'out/cards.manifest.json'), 'utf8')), api.manifest);
  assert.equal(api.manifest.layers?.map((l) => l.file), FILES);
});

test('check --layer: a layer that does not contain the service is an error at its scope; an unreadable layer is refused first', async () => {
  const [r, missing] = await Promise.all([
    palisade(['check', '--layer', 'payments.layer.json', 'cards.policy.json', 'storefront.policy.json'], { cwd: dir }),
    palisade(['check', '--layer', 'nope.json', 'cards.policy.json'], { cwd: dir }),
  ]);
  assert.is(r.code, 2);
  assert.match(r.stdout, /^cards\.policy\.json: ok \(3\/3 rules live\)$/m);
  assert.match(r.stderr, /^payments\.layer\.json:5:12: error: scope 'spiffe:\/\/bank\.example\/ns\/payments\/\*\*' does not contain the service 'spiffe:\/\/bank\.example\/ns\/web\/sa\/storefront' \(storefront\.policy\.json:5:14\) \(at \/scope\)$/m);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, /^nope\.json: error: cannot read policy: ENOENT$/m);
  assert.not.match(missing.stdout, /ok/);
});

test.run();
