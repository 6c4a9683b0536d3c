/**
 * Linking as Envoy's V8 host does it: the module may import only what Envoy registers, with
 * the same signatures, must export the 0.2.1 ABI marker, memory and an allocator, and its
 * callbacks must have Envoy's signatures. Anything else is refused before instantiation.
 */
import { IMPORTS, CALLBACKS, ABI_EXPORT, OTHER_ABI_EXPORTS } from './abi.ts';
import { readSurface, describeSignature } from './module.ts';

/** Thrown when a module cannot be loaded the way Envoy would refuse it. */
export class FilterLoadError extends Error {
  override name = 'FilterLoadError';
}

/** Compiles and checks the module's link surface exactly as Envoy's V8 host does. */
export async function compile(bytes: Uint8Array): Promise<WebAssembly.Module> {
  let surface;
  try {
    surface = readSurface(bytes);
  } catch (err) {
    throw new FilterLoadError(`Failed to load Wasm module: ${(err as Error).message}`);
  }
  for (const imp of surface.imports) {
    const where = `${imp.module}.${imp.name}`;
    const known = Object.hasOwn(IMPORTS, imp.module) && Object.hasOwn(IMPORTS[imp.module], imp.name);
    const wanted = known ? IMPORTS[imp.module][imp.name] : undefined;
    if (imp.kind !== 'func' || wanted === undefined) {
      throw new FilterLoadError(`Failed to load Wasm module due to a missing import: ${where}`);
    }
    if (imp.signature !== wanted) {
      throw new FilterLoadError(
        `Failed to load Wasm module due to an import type mismatch for ${where}, want: ${describeSignature(wanted)}, but the module imports: ${describeSignature(imp.signature ?? '?')}`,
      );
    }
  }
  const exported = surface.exportedFunctions;
  if (!exported.has(ABI_EXPORT)) {
    const other = OTHER_ABI_EXPORTS.find((name) => exported.has(name));
    throw new FilterLoadError(
      other ? `Wasm module uses an unsupported ABI version (${other}); only ${ABI_EXPORT} is accepted` : `Wasm module is missing the ABI version export ${ABI_EXPORT}`,
    );
  }
  if (!surface.exportedMemories.has('memory')) throw new FilterLoadError('Wasm module is missing the exported memory "memory"');
  if (!exported.has('malloc') && !exported.has('proxy_on_memory_allocate')) {
    throw new FilterLoadError('Wasm module is missing malloc or proxy_on_memory_allocate: the host could not hand it any data');
  }
  for (const [name, sig] of exported) {
    const wanted = CALLBACKS[name];
    if (wanted !== undefined && Object.hasOwn(CALLBACKS, name) && sig !== wanted) {
      throw new FilterLoadError(`Bad function signature for: ${name}, want: ${describeSignature(wanted)}, but the module exports: ${describeSignature(sig)}`);
    }
  }
  if (surface.hasStart) {
    // Envoy runs a start function before any context exists: host calls from it fail and the
    // VM fails to start. Refuse it up front with the fix.
    throw new FilterLoadError('Wasm module has a start section: Envoy runs it before any context exists; export _initialize instead (asc --exportStart _initialize)');
  }
  try {
    return await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new FilterLoadError(`Failed to load Wasm module: ${(err as Error).message}`);
  }
}
