/**
 * What an optimization pass is: `Program → Program`, reporting any warning through the sink
 * it is handed (esbuild-style) instead of carrying diagnostics inside the IR.
 */
import type { Diagnostic } from '../frontend/ast.ts';
import type { Program } from '../ir/ir.ts';

export type Warn = (d: Diagnostic) => void;
export type Pass = (p: Program, warn: Warn) => Program;
