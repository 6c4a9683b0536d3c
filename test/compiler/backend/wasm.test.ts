/**
 * The compiled module against Envoy's link surface (/work/shared/reference/envoy-proxy-wasm.md),
 * checked by parsing the binary here, independently of the host; and build determinism.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { compilePolicy, type Compiled } from '../../../compiler/index.ts';
import { sha256 } from '../../../compiler/backend/manifest.ts';
import { buildEntry } from '../../../compiler/backend/build.ts';
import { loadFilter, type LogLine } from '../../../host/filter.ts';

const FILE = 'examples/card-service/card-service.policy.json';
let first: Compiled;

test.before(async () => {
  const r = await compilePolicy(FILE, readFileSync(FILE, 'utf8'));
  if (!r.ok) throw new Error('example policy does not compile');
  first = r;
});

/** Envoy's `env` functions, with the signatures its V8 linker demands (params → results). */
const ENVOY_ENV: Record<string, string> = {
  proxy_log: 'i32 i32 i32 → i32',
  proxy_get_log_level: 'i32 → i32',
  proxy_get_property: 'i32 i32 i32 i32 → i32',
  proxy_set_property: 'i32 i32 i32 i32 → i32',
  proxy_get_header_map_pairs: 'i32 i32 i32 → i32',
  proxy_get_header_map_value: 'i32 i32 i32 i32 i32 → i32',
  proxy_remove_header_map_value: 'i32 i32 i32 → i32',
  proxy_replace_header_map_value: 'i32 i32 i32 i32 i32 → i32',
  proxy_add_header_map_value: 'i32 i32 i32 i32 i32 → i32',
  proxy_get_buffer_bytes: 'i32 i32 i32 i32 i32 → i32',
  proxy_send_local_response: 'i32 i32 i32 i32 i32 i32 i32 i32 → i32',
  proxy_define_metric: 'i32 i32 i32 i32 → i32',
  proxy_increment_metric: 'i32 i64 → i32',
  proxy_record_metric: 'i32 i64 → i32',
  proxy_get_current_time_nanoseconds: 'i32 → i32',
  proxy_get_shared_data: 'i32 i32 i32 i32 i32 → i32',
  proxy_set_shared_data: 'i32 i32 i32 i32 i32 → i32',
};

interface Surface { imports: { module: string; name: string; sig: string }[]; exports: Map<string, number>; sections: number[] }

/** Minimal wasm reader: type, import, export sections and the ids of all sections. */
function readModule(bytes: Uint8Array): Surface {
  let p = 8;
  const u32 = () => { let v = 0, s = 0, b; do { b = bytes[p++]; v |= (b & 0x7f) << s; s += 7; } while (b & 0x80); return v >>> 0; };
  const name = () => { const n = u32(); const s = Buffer.from(bytes.subarray(p, p + n)).toString('utf8'); p += n; return s; };
  const VT: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };
  const types: string[] = [];
  const out: Surface = { imports: [], exports: new Map(), sections: [] };
  assert.equal([...bytes.subarray(0, 8)], [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = u32();
    const end = p + size;
    out.sections.push(id);
    if (id === 1) {
      for (let n = u32(); n--; ) {
        assert.is(bytes[p++], 0x60);
        const params = Array.from({ length: u32() }, () => VT[bytes[p++]]);
        const results = Array.from({ length: u32() }, () => VT[bytes[p++]]);
        types.push(`${params.join(' ')} → ${results.join(' ')}`.trim());
      }
    } else if (id === 2) {
      for (let n = u32(); n--; ) {
        const module = name();
        const field = name();
        const kind = bytes[p++];
        assert.is(kind, 0, `import ${module}.${field} must be a function`);
        out.imports.push({ module, name: field, sig: types[u32()] });
      }
    } else if (id === 7) {
      for (let n = u32(); n--; ) {
        const field = name();
        out.exports.set(field, bytes[p++]);
        u32();
      }
    }
    p = end;
  }
  return out;
}

test('imports: only Envoy functions, with exactly Envoy\'s signatures', () => {
  const m = readModule(first.wasm);
  assert.ok(m.imports.length > 0);
  for (const i of m.imports) {
    assert.is(i.module, 'env', `${i.module}.${i.name}`);
    assert.ok(ENVOY_ENV[i.name], `${i.name} is not one of Envoy's host functions`);
    assert.is(i.sig, ENVOY_ENV[i.name], i.name);
  }
  const names = m.imports.map((i) => i.name);
  for (const banned of ['abort', 'trace', 'seed']) assert.not.ok(names.includes(banned));
});

test('exports: ABI marker, allocator, memory, _initialize, callbacks; no start section', () => {
  const m = readModule(first.wasm);
  const FUNC = 0, MEMORY = 2;
  for (const f of ['proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'malloc', '_initialize', 'proxy_on_vm_start', 'proxy_on_configure',
    'proxy_on_request_headers']) {
    assert.is(m.exports.get(f), FUNC, f);
  }
  // Callbacks with nothing to do are not exported: Envoy skips a callback the module lacks
  // (each would cost a VM entry per request).
  for (const f of ['proxy_on_context_create', 'proxy_on_response_headers', 'proxy_on_log', 'proxy_on_done', 'proxy_on_delete']) {
    assert.not.ok(m.exports.has(f), f);
  }
  assert.is(m.exports.get('memory'), MEMORY);
  assert.not.ok(m.sections.includes(8), 'a start section would run before any context exists');
  // the same answer through the engine's own view
  const mod = new WebAssembly.Module(new Uint8Array(first.wasm));
  assert.ok(WebAssembly.Module.exports(mod).some((e) => e.name === 'proxy_abi_version_0_2_1'));
});

test('an AssemblyScript abort in the runtime logs one critical line, traps, and the host answers 503 (fail closed)', async () => {
  // A probe entry point built exactly like a policy filter (same runtime, same asc flags,
  // abort routed to runtime/abort.ts), whose request callback fails an assertion.
  const probe = `export * from "../../runtime/lifecycle";
import "../../runtime/abort";
export function proxy_on_request_headers(contextId: i32, headers: i32, endOfStream: i32): i32 {
  assert(headers < 0, "probe");
  return 0;
}`;
  const wasm = await buildEntry('filters/probe/abort-probe.ts', { 'filters/probe/abort-probe.ts': probe });
  assert.not.ok(readModule(wasm).imports.some((i) => i.name === 'abort'), 'abort is ours, not an env import Envoy lacks');
  const lines: LogLine[] = [];
  const filter = await loadFilter(wasm, { log: (l) => lines.push(l) });
  try {
    const outcome = await filter.handleRequest({ method: 'GET', path: '/', authority: 'a.test' });
    assert.is(outcome.status, 503);
    assert.is(outcome.details, 'wasm_fail_stream');
    assert.ok(lines.some((l) => l.level === 'critical' && l.message === 'palisade: filter aborted'), JSON.stringify(lines));
    assert.match(filter.failed ?? '', /proxy_on_request_headers/);
    // A failed VM stays failed, as in Envoy: every later request is refused too.
    assert.is((await filter.handleRequest({ method: 'GET', path: '/', authority: 'a.test' })).status, 503);
  } finally {
    await filter.close();
  }
});

test('determinism: the same policy compiles to byte-identical wasm; manifest describes it', async () => {
  const again = await compilePolicy(FILE, readFileSync(FILE, 'utf8'));
  assert.ok(again.ok);
  if (!again.ok) return;
  assert.ok(Buffer.from(again.wasm).equals(Buffer.from(first.wasm)));
  assert.is(again.as, first.as);
  const m = first.manifest;
  assert.is(m.name, 'card-service');
  assert.is(m.wasm.sha256, sha256(first.wasm));
  assert.is(m.wasm.bytes, first.wasm.length);
  assert.is(m.source.sha256, sha256(readFileSync(FILE)));
  assert.is(m.abi, '0.2.1');
  assert.equal(m.rules, { total: 5, live: 5 });
});

test.run();
