/**
 * What a compiled filter depends on besides the policy: the compiler's version, the
 * AssemblyScript compiler that builds it, and the proxy-wasm ABI it exports. `palisade
 * --version` prints them; the compiled-filter cache keys on them.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const packageVersion = (file: string): string => (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;

export const COMPILER_VERSION = packageVersion(fileURLToPath(new URL('../../package.json', import.meta.url)));
export const ASC_VERSION = packageVersion(createRequire(import.meta.url).resolve('assemblyscript/package.json'));
/** The proxy-wasm ABI every filter exports (`proxy_abi_version_0_2_1`). */
export const ABI_VERSION = '0.2.1';
