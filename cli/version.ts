/** `palisade --version`: what a bug report and a reproducible build need to name. */
import { ABI_VERSION, ASC_VERSION, COMPILER_VERSION } from '../compiler/backend/toolchain.ts';

export const VERSION = `palisade ${COMPILER_VERSION} (proxy-wasm ABI ${ABI_VERSION}, AssemblyScript ${ASC_VERSION})`;
