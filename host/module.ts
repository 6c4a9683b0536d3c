/**
 * Reads the parts of a wasm binary the JS API does not expose: function signatures of
 * imports and exports, and whether a start section exists. Only the sections needed for
 * link checks are decoded; everything else is skipped by length.
 */

export interface ModuleSurface {
  imports: { module: string; name: string; kind: 'func' | 'table' | 'memory' | 'global' | 'tag'; signature?: string }[];
  /** Exported functions by name with their signature (`params->results`). */
  exportedFunctions: Map<string, string>;
  exportedMemories: Set<string>;
  hasStart: boolean;
}

const VALTYPE: Record<number, string> = { 0x7f: 'i', 0x7e: 'j', 0x7d: 'f', 0x7c: 'd', 0x7b: 'v', 0x70: 'r', 0x6f: 'x' };
const KINDS = ['func', 'table', 'memory', 'global', 'tag'] as const;

class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}
  byte(): number {
    if (this.pos >= this.bytes.length) throw new Error('unexpected end of module');
    return this.bytes[this.pos++];
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 35) throw new Error('malformed LEB128');
    }
  }
  name(): string {
    const len = this.u32();
    const s = new TextDecoder().decode(this.bytes.subarray(this.pos, this.pos + len));
    this.pos += len;
    return s;
  }
  limits(): void {
    const flags = this.u32();
    this.u32();
    if (flags & 1) this.u32();
  }
}

export function readSurface(bytes: Uint8Array): ModuleSurface {
  const r = new Reader(bytes);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new Error('not a wasm module (bad magic)');
  }
  r.pos = 8;
  const types: string[] = [];
  const funcTypes: string[] = []; // signature per function index (imports first)
  const surface: ModuleSurface = { imports: [], exportedFunctions: new Map(), exportedMemories: new Set(), hasStart: false };
  const exports: { name: string; kind: number; index: number }[] = [];
  while (r.pos < bytes.length) {
    const id = r.byte();
    const size = r.u32();
    const end = r.pos + size;
    if (end > bytes.length) throw new Error('section extends past the end of the module');
    switch (id) {
      case 1: // type
        for (let n = r.u32(); n > 0; n--) {
          if (r.byte() !== 0x60) throw new Error('unsupported type form');
          const params = Array.from({ length: r.u32() }, () => VALTYPE[r.byte()] ?? '?').join('');
          const results = Array.from({ length: r.u32() }, () => VALTYPE[r.byte()] ?? '?').join('');
          types.push(`${params}->${results}`);
        }
        break;
      case 2: // import
        for (let n = r.u32(); n > 0; n--) {
          const module = r.name();
          const name = r.name();
          const kind = r.byte();
          const entry: ModuleSurface['imports'][number] = { module, name, kind: KINDS[kind] ?? 'tag' };
          if (kind === 0) {
            entry.signature = types[r.u32()] ?? '?';
            funcTypes.push(entry.signature);
          } else if (kind === 1) {
            r.byte();
            r.limits();
          } else if (kind === 2) r.limits();
          else if (kind === 3) {
            r.byte();
            r.byte();
          } else {
            r.byte();
            r.u32();
          }
          surface.imports.push(entry);
        }
        break;
      case 3: // function
        for (let n = r.u32(); n > 0; n--) funcTypes.push(types[r.u32()] ?? '?');
        break;
      case 7: // export
        for (let n = r.u32(); n > 0; n--) exports.push({ name: r.name(), kind: r.byte(), index: r.u32() });
        break;
      case 8:
        surface.hasStart = true;
        break;
    }
    r.pos = end;
  }
  for (const e of exports) {
    if (e.kind === 0) surface.exportedFunctions.set(e.name, funcTypes[e.index] ?? '?');
    else if (e.kind === 2) surface.exportedMemories.add(e.name);
  }
  return surface;
}

/** `iij->i` → `(i32, i32, i64) -> i32`, the way a person reads it. */
export function describeSignature(sig: string): string {
  const names: Record<string, string> = { i: 'i32', j: 'i64', f: 'f32', d: 'f64', v: 'v128', r: 'funcref', x: 'externref' };
  const [params, results] = sig.split('->');
  const list = (s: string) => [...s].map((c) => names[c] ?? c).join(', ');
  return `(${list(params)}) -> ${results ? list(results) : 'nil'}`;
}
