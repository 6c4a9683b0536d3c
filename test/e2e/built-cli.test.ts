/**
 * The CLI users run is the JavaScript `npm run build` (prepare) writes to dist/, not the
 * TypeScript: it must start, list its subcommands without loading them, and find the files
 * its modules read beside their sources (the AssemblyScript runtime the compiler feeds asc).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildCli } from '../../scripts/build.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/palisade.js');
const built = suite('built CLI');

const palisade = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });

built.before(async () => {
  // Rebuilt only when stale (bin/palisade.js then says so): under `npm test` the build is the
  // one pretest made, and rewriting dist/ while other workers' tests spawn `palisade` made
  // them start on a half-written bundle or with the fallback notice in their output.
  if (palisade('--version').stderr !== '') await buildCli();
});

built('--version runs the built JavaScript (no tsx fallback notice) and names the package version', () => {
  const r = palisade('--version');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  // The whole line (ABI and AssemblyScript versions too) is e2e/tooling.test.ts's concern.
  assert.ok(r.stdout.startsWith(`palisade ${JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version} (`), r.stdout);
});

built('--help lists every subcommand and exits 0', () => {
  const r = palisade('--help');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  for (const name of ['compile', 'test', 'ca', 'agent', 'envoy', 'demo']) assert.match(r.stdout, new RegExp(`\\n  ${name} `));
});

built('a subcommand\'s help shows its own options', () => {
  const r = palisade('help', 'agent');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, '--ca-url <url>');
  assert.match(r.stdout, '--inbound <host:port>');
});

built('an npm install after the build makes dist/ stale: the bundled packages must not outlive a package update', () => {
  // What bin/palisade.js compares with the build's time; npm rewrites this file on every change to node_modules.
  const { inputs } = JSON.parse(readFileSync(path.join(ROOT, 'dist/inputs.json'), 'utf8'));
  assert.ok(inputs.includes('node_modules/.package-lock.json'), 'dist/inputs.json does not list node_modules/.package-lock.json');
});

built('the built compiler finds the AssemblyScript runtime and writes a filter', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'palisade-built-cli-'));
  try {
    const r = palisade('compile', 'examples/card-service/card-service.policy.json', '--out', out);
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stderr, '');
    assert.ok(existsSync(path.join(out, 'card-service.wasm')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

built.run();
