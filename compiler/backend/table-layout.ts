// The policy table layout that the emitter (compiler/backend/emit.ts) writes and the runtime
// (filters/policy/tables.ts, which documents the records) reads: one definition that both
// import, so neither side can change a header slot, stride or code alone. It is compiled as
// TypeScript and as AssemblyScript (compiler/backend/build.ts ships it to asc), so it holds
// integer constants only. The key hash cannot be shared this way (table-hash.ts and
// tables.ts keyHash): test/compiler/backend/table-layout.test.ts runs both on the same keys
// and reads the emitted tables back through the compiled runtime.

// Header: the table's first HEADER_SIZE i32s.
export const H_RULE_COUNT = 0;
export const H_RULES = 1;
export const H_METHODS = 2;
export const H_METHOD_LISTS = 3;
export const H_ATOMS = 4;
export const H_TRIE = 5;
export const H_ANY_PATH = 6;
export const H_PRINCIPALS = 7;
export const H_STRIP = 8;
export const H_SLOT_COUNT = 9;
export const H_SLOTS = 10;
export const H_PARAM_NAMES = 11;
export const H_DRY_RUN = 12;
export const H_SERVICE = 13; // the policy's service SPIFFE ID in B: offset, then length
export const H_SERVICE_LEN = 14;
export const HEADER_SIZE = 15;

// Fixed-size records, in i32s.
export const RULE_STRIDE = 5;
export const ATOM_STRIDE = 3;
export const SLOT_STRIDE = 3;

// Rule flags (a rule record's first field).
export const RULE_DENY = 1;
export const RULE_ANY_CALLER = 2;
export const RULE_HAS_WHEN = 4;

// Scratch bytes the runtime's install() lays out per rule (four u32 arrays) and per slot
// (generation and value); the emitter reserves at least this much.
export const SCRATCH_RULE_BYTES = 16;
export const SCRATCH_SLOT_BYTES = 8;

// Slot kinds (a slot record's first field).
export const SLOT_HEADER = 0;
export const SLOT_QUERY = 1;
export const SLOT_CLAIM = 2;
