/**
 * `palisade compile --layer` and `palisade check --layer` as CI runs them, without a control
 * plane: the filter is the one `compileLayers` (what a control plane calls) builds from the
 * same files, byte for byte.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, cpSync, writeFileSync } from 'node:fs';
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

test('test and eval --layer: case files and one request run against the composed filter; without the layers the root deny is not there', async () => {
  const request = (source: string, path: string) => ({ method: 'GET', path, source });
  writeFileSync(path.join(dir, 'cards.cases.json'), JSON.stringify({
    policy: 'cards.policy.json',
    cases: [
      { name: 'the root denies admin pages', request: request('spiffe://bank.example/ns/web/sa/frontend', '/cards/../admin/x'),
        expect: { decision: 'deny', status: 403, rule: 'bank/no-admin' } },
      { name: 'the namespace lets prometheus scrape', request: request('spiffe://bank.example/ns/monitoring/sa/prometheus', '/metrics'),
        expect: { decision: 'allow', status: 200, rule: 'payments/metrics' } },
    ],
  }));
  const admin = JSON.stringify(request('spiffe://bank.example/ns/web/sa/frontend', '/admin/x'));
  const [layered, alone, both, evaluated] = await Promise.all([
    palisade(['test', '--layer', 'bank.layer.json', '--layer', 'payments.layer.json', '--coverage', 'cards.cases.json'], { cwd: dir }),
    palisade(['test', '--no-cache', 'cards.cases.json'], { cwd: dir }),
    palisade(['test', '--layer', 'bank.layer.json', '--wasm', 'out/cards.wasm', 'cards.cases.json'], { cwd: dir }),
    palisade(['eval', '--layer', 'bank.layer.json', '--policy', 'cards.policy.json', '--request', admin, '--format', 'json'], { cwd: dir }),
  ]);
  assert.is(evaluated.code, 0, evaluated.stderr);
  assert.equal(JSON.parse(evaluated.stdout), { decision: 'deny', rule: 'bank/no-admin', reason: 'deny_rule', mode: 'enforce', status: 403, upstreamHeaders: null });
  assert.is(layered.code, 0, layered.stdout + layered.stderr);
  assert.match(layered.stdout, /^2 passed, 0 failed$/m);
  // Coverage names every layer's rules in their own files.
  assert.match(layered.stdout, /^\s+bank\.layer\.json:\d+:\d+: rule 'bank\/health-check' decided no case$/m);
  assert.match(layered.stdout, /cards\.policy\.json:\d+:\d+: a `to` entry of rule 'frontend' matched no case/);
  assert.is(alone.code, 1);
  assert.match(alone.stdout, /^0 passed, 2 failed$/m);
  assert.is(both.code, 2);
  assert.match(both.stderr, /^palisade: --layer composes the case files' policies/m);
});

test.run();
