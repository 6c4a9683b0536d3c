/**
 * asconfig.json is where the compiler's asc options live: asc run by hand on the generated
 * AssemblyScript (`palisade compile --emit as`) with target `release` must build exactly
 * the bytes `palisade compile` builds, so anyone can reproduce and inspect the artifact.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compilePolicy } from '../../../compiler/index.ts';
import { GENERATED, LIBRARY } from '../../../compiler/backend/build.ts';
import { policyText } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const ASC = join(ROOT, 'node_modules', 'assemblyscript', 'bin', 'asc.js');

test('asc with asconfig.json (target release) builds the same bytes as palisade compile', async () => {
  const compiled = await compilePolicy('t.policy.json', policyText([{ id: 'r', effect: 'allow', to: [{ methods: ['GET'], paths: ['/a/{id}'] }] }]));
  if (!compiled.ok) throw new Error('policy did not compile');
  const dir = mkdtempSync(join(tmpdir(), 'palisade-asc-'));
  try {
    for (const part of LIBRARY) cpSync(join(ROOT, part), join(dir, part), { recursive: true });
    writeFileSync(join(dir, GENERATED), compiled.as);
    await promisify(execFile)(process.execPath, [ASC, 'filters/policy/index.ts', '--target', 'release', '--outFile', 'by-hand.wasm'], { cwd: dir });
    const byHand = readFileSync(join(dir, 'by-hand.wasm'));
    assert.ok(Buffer.from(compiled.wasm).equals(byHand), `asc by hand built ${byHand.length} bytes, palisade compile ${compiled.wasm.length}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
