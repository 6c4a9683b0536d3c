/**
 * The layout DEVELOPERS.md promises, checked on the code's own imports: components import
 * only from components below them, no file or folder cycles, nothing imports cli/, and the
 * agent process reaches nothing of the CA server.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = path.resolve(import.meta.dirname, '../..');
/** Bottom-up: a component may import from itself and from those before it. */
const LAYERS = ['platform', 'store', 'spiffe', 'compiler', 'lint', 'runtime', 'filters', 'host', 'testing', 'learn', 'diff', 'envoy', 'ca', 'audit', 'agent', 'control', 'dashboard', 'cli'];

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|mjs)$/.test(f) && !f.endsWith('.d.ts'))
    .map((f) => `${dir}/${f.split(path.sep).join('/')}`);
}

const IMPORT = /\b(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;

function importsOf(file: string): string[] {
  // Comments may quote imports (runtime/lifecycle.ts does): only code counts.
  const text = readFileSync(path.join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, '');
  return [...text.matchAll(IMPORT)].map((m) => {
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), m[1]));
    return /\.\w+$/.test(target) ? target : `${target}.ts`; // AssemblyScript imports omit the extension
  });
}

const files = LAYERS.flatMap(sourceFiles);
const known = new Set(files);
// Only imports of our own source files count (not JSON, and not the `from "./expr"` the
// emitter writes into generated AssemblyScript).
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => known.has(t))]));
const component = (file: string) => file.split('/')[0];

test('every import points down the layers', () => {
  const upward: string[] = [];
  for (const [file, targets] of graph) {
    for (const t of targets) {
      const from = LAYERS.indexOf(component(file));
      const to = LAYERS.indexOf(component(t));
      if (to < 0 || to > from) upward.push(`${file} -> ${t}`);
    }
  }
  assert.equal(upward, []);
});

test('nothing outside cli/ imports cli/, not even tests and benches', () => {
  const outside = ['test', 'bench', ...LAYERS.filter((l) => l !== 'cli')].flatMap(sourceFiles);
  const offenders = outside.flatMap((f) => importsOf(f).filter((t) => t.startsWith('cli/')).map((t) => `${f} -> ${t}`));
  assert.equal(offenders.filter((o) => !o.startsWith('test/cli/') && !o.startsWith('test/e2e/')), []);
});

/** Strongly connected components of more than one node (Tarjan). */
function cycles(nodes: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index); low.set(v, index++); stack.push(v); on.add(v);
    for (const w of nodes.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; on.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of nodes.keys()) if (!idx.has(v)) visit(v);
  return found;
}

test('no import cycles between files', () => {
  assert.equal(cycles(new Map([...graph].map(([f, ts]) => [f, new Set(ts)]))), []);
});

test('no import cycles between folders', () => {
  const folders = new Map<string, Set<string>>();
  for (const [file, targets] of graph) {
    const from = path.posix.dirname(file);
    const set = folders.get(from) ?? folders.set(from, new Set()).get(from)!;
    for (const t of targets) if (path.posix.dirname(t) !== from) set.add(path.posix.dirname(t));
  }
  assert.equal(cycles(folders), []);
});

test('the agent process reaches nothing of the CA server', () => {
  const entries = [...graph.keys()].filter((f) => f.startsWith('agent/') || /^cli\/agent[\w-]*\.ts$/.test(f));
  const seen = new Set<string>();
  const walk = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const t of graph.get(f) ?? []) walk(t);
  };
  entries.forEach(walk);
  assert.equal([...seen].filter((f) => f.startsWith('ca/')), []);
});

test.run();
