/**
 * `--layer FILE` (repeatable) of `compile`, `check` and `lint`: scope layers (the trust-domain
 * root, namespaces) composed with every service policy the command is given, as a control
 * plane composes them (compiler/index.ts `compileLayers`; docs/policy.md, "Layers").
 */
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { readPolicyFile } from './inputs.ts';
import type { LayerText } from '../compiler/index.ts';

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
