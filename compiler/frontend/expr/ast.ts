/**
 * The untyped expression tree the parser produces. Positions are character offsets into the
 * expression text (the decoded JSON string); the checker maps them into the policy file.
 */
export type Expr = { start: number } & (
  | { k: 'str'; v: string }
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'list'; items: Expr[] }
  | { k: 'ident'; name: string }
  /** `target.name` */
  | { k: 'member'; target: Expr; name: string; nameStart: number }
  /** `target[key]` */
  | { k: 'index'; target: Expr; key: Expr }
  /** `fn(args)`: a global function such as `size` */
  | { k: 'call'; fn: string; args: Expr[] }
  /** `target.fn(args)`: a method such as `startsWith` */
  | { k: 'method'; target: Expr; fn: string; args: Expr[]; nameStart: number }
  | { k: 'not'; e: Expr }
  | { k: 'binary'; op: BinaryOp; l: Expr; r: Expr; opStart: number }
);

export type BinaryOp = '||' | '&&' | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in';

/** A syntax error at an offset in the expression text. */
export interface SyntaxError {
  offset: number;
  message: string;
}
