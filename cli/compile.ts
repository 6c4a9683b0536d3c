import path from 'node:path';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { compileLayers, compilePolicy, type LayerText } from '../compiler/index.ts';
import { formatDiagnostic } from '../compiler/frontend/ast.ts';
import { writeAtomically } from './process.ts';
import { readPolicyFile } from './inputs.ts';
import { layerOption, readLayers } from './layers.ts';

interface CompileOptions {
  out: string;
  emit?: 'ir' | 'as';
  layer: string[];
}

/**
 * `palisade compile <policy.json>... [--out DIR] [--emit ir|as]`: writes DIR/<name>.wasm
 * and DIR/<name>.manifest.json per policy. Diagnostics go to stderr as
 * `file:line:col: severity: message (at /pointer)`; any error exits 2 after every file was
 * tried. `--emit` prints the optimized IR or the generated AssemblyScript to stdout.
 * `--layer FILE...` composes each policy with those scope layers (`compileLayers`: the same
 * bytes a control plane builds from the same files).
 */
export function register(program: Command): void {
  layerOption(program.command('compile'))
    .description('compile policies to proxy-wasm filters (DIR/<name>.wasm + DIR/<name>.manifest.json)')
    .argument('<policy...>', 'policy files (JSON)')
    .option('--out <dir>', 'output directory', 'build')
    .option('--emit <what>', 'also print "ir" (the optimized decision program) or "as" (generated AssemblyScript) to stdout')
    .action(async (files: string[], opts: CompileOptions) => {
      if (opts.emit !== undefined && opts.emit !== 'ir' && opts.emit !== 'as') throw new CliError(`--emit must be "ir" or "as", not "${opts.emit}"`, 2);
      await compileFiles(files, opts, readLayers(opts.layer));
    });
}

async function compileFiles(files: string[], opts: CompileOptions, layers: LayerText[]): Promise<void> {
  const names = new Map<string, string>();
  let failed = false;
  for (const file of files) {
    const text = readPolicyFile(file);
    if (text === undefined) {
      failed = true;
      continue;
    }
    const result = layers.length ? await compileLayers([...layers, { file, text }]) : await compilePolicy(file, text);
    if (!result.ok) {
      for (const d of result.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
      failed = true;
      continue;
    }
    for (const w of result.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
    const { manifest } = result;
    const other = names.get(manifest.name);
    if (other) {
      process.stderr.write(`${file}: error: policy name "${manifest.name}" is also the name of ${other}; artifacts would overwrite each other\n`);
      failed = true;
      continue;
    }
    names.set(manifest.name, file);
    const wasmPath = path.join(opts.out, `${manifest.name}.wasm`);
    const manifestPath = path.join(opts.out, `${manifest.name}.manifest.json`);
    writeAtomically(wasmPath, result.wasm);
    writeAtomically(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    if (opts.emit) process.stdout.write(opts.emit === 'ir' ? result.ir : result.as);
    const summary = `${file} → ${wasmPath} (${manifest.wasm.bytes} bytes, ${manifest.rules.live}/${manifest.rules.total} rules live)\n`;
    (opts.emit ? process.stderr : process.stdout).write(summary);
  }
  if (failed) throw new CliError('', 2);
}

