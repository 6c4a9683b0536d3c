/**
 * `npm run build` (and `prepare`, so a fresh `npm install`/`npm ci` runs it): the CLI as
 * plain JavaScript in dist/, so `palisade` and every agent start without a TypeScript
 * transpiler in the process (tsx cost ~1.5 s of start-up and tens of MB per process).
 *
 * One esbuild bundle from the CLI's entry: whatever it imports, wherever it lives, is in
 * it (no list of folders to keep in step with the tree); the `import()`s that load
 * subcommands and heavy modules lazily become separate chunks, loaded as lazily. npm
 * packages stay external and load from node_modules as usual, but for chevrotain: it
 * comes as hundreds of small ES modules (lodash-es), whose loading cost every command that
 * reads a policy ~0.3 s of CPU; bundled, its chunk loads in a few milliseconds.
 *
 * Modules find files beside their source (compiler/build.ts reads runtime/ and filters/,
 * the AssemblyScript the policy compiler feeds asc; compiler/manifest.ts reads
 * package.json). So each module's `import.meta.url`/`dirname`/`filename` is rewritten to
 * its source file's location, relative to the chunk it ends up in: the built JS reads the
 * same files the sources do, and dist/ can be rebuilt anywhere the tree is.
 *
 * dist/inputs.json lists the source files the bundle was built from; bin/palisade.js
 * runs the sources through tsx instead when any of them is newer than the bundle.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { build, type Plugin } from 'esbuild';

const ROOT = path.resolve(import.meta.dirname, '..');
const ENTRY = 'cli/main.ts';
const OUT = 'dist';

/** Packages bundled into dist/ rather than loaded from node_modules (see above). */
const BUNDLED = /^(chevrotain|lodash-es)(\/|$)|^@chevrotain\//;

/** Every other npm package stays an import from node_modules. */
const externalPackages: Plugin = {
  name: 'external-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, ({ path: specifier }) => (BUNDLED.test(specifier) || specifier.startsWith('node:') ? undefined : { path: specifier, external: true }));
  },
};

/** Rewrites `import.meta.{url,dirname,filename}` of our own modules to their source location. */
const sourceLocation: Plugin = {
  name: 'source-location',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?ts$/ }, async ({ path: file }) => {
      const text = await readFile(file, 'utf8');
      const fromChunk = (target: string) => JSON.stringify(path.relative(path.join(ROOT, OUT), target).split(path.sep).join('/'));
      const at = (target: string) => `__sourcePath(new URL(${fromChunk(target)}, import.meta.url))`;
      const where = { url: `new URL(${fromChunk(file)}, import.meta.url).href`, dirname: at(path.dirname(file)), filename: at(file) };
      const rewritten = text.replace(/\bimport\.meta\.(url|dirname|filename)\b/g, (_m, what: keyof typeof where) => where[what]);
      const contents = rewritten === text ? text : `import { fileURLToPath as __sourcePath } from 'node:url';\n${rewritten}`;
      return { contents, loader: 'ts' };
    });
  },
};

export async function buildCli(): Promise<void> {
  const builtAt = Date.now(); // before reading: a source saved during the build counts as newer
  rmSync(path.join(ROOT, OUT), { recursive: true, force: true }); // chunk names change with their content
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { main: ENTRY },
    outdir: OUT,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    plugins: [externalPackages, sourceLocation],
  });
  const inputs = Object.keys(result.metafile.inputs).filter((f) => !f.startsWith('node_modules/'));
  writeFileSync(path.join(ROOT, OUT, 'inputs.json'), `${JSON.stringify({ builtAt, inputs }, null, 1)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) await buildCli();
