/**
 * `--layer FILE` (repeatable) of `compile`, `check`, `lint`, `test` and `eval`: scope layers
 * (the trust-domain root, namespaces) composed with every service policy the command is
 * given, as a control plane composes them (compiler/index.ts `compileLayers`; docs/policy.md,
 * "Layers").
 */
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { failCompile, readPolicyFile } from './inputs.ts';
import { compileLayers, type LayerText } from '../compiler/index.ts';
import { compileWithCache } from '../testing/filter-cache.ts';

export function layerOption(command: Command): Command {
  return command.option(
    '--layer <file>',
    'a scope layer (root or namespace policy) to compose with each service policy; repeat it for each layer',
    (file: string, files: string[]) => [...files, file],
    [] as string[],
  );
}

/** The layers' texts; any unreadable: its line on stderr, then exit 2 before any policy is tried. */
export function readLayers(files: string[]): LayerText[] {
  const layers = files.map((file) => ({ file, text: readPolicyFile(file) }));
  if (layers.some((l) => l.text === undefined)) throw new CliError('', 2);
  return layers as LayerText[];
}

/**
 * The filter a command runs requests through (`test`, `eval`): the policy composed with
 * `layers`, compiled (the cache keys one policy's bytes), or without layers from the
 * filter cache when `cache`. A policy that does not compile: its diagnostics, exit 2.
 */
export async function runnableFilter(file: string, text: string, layers: LayerText[], cache: boolean): Promise<Uint8Array> {
  const warn = (line: string) => process.stderr.write(`palisade: warning: ${line}\n`);
  const result = layers.length ? await compileLayers([...layers, { file, text }]) : await compileWithCache(file, text, cache, warn);
  if (!result.ok) failCompile(file, result.diagnostics);
  return result.wasm;
}
