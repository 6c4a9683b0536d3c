// Fixed entry point of every compiled policy filter. The proxy-wasm exports come from the
// runtime; the policy itself (static tables and expression functions) from the module
// compiler/backend/emit.ts generates, which compiler/backend/build.ts places next to this file as
// `generated.ts` beside it in its in-memory file system.
export * from "./exports";
import "../../runtime/abort"; // asc --use abort=runtime/abort/abort needs the file in the program
import { install } from "./tables";
import { BLOB, SCRATCH, TABLE, evalFn } from "./generated";

install(TABLE, BLOB, SCRATCH, evalFn);
