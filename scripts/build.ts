/**
 * `npm run build` (and `prepare`, so a fresh `npm install`/`npm ci` runs it): the CLI as
 * plain JavaScript in dist/, so `palisade` and every agent start without a TypeScript
 * transpiler in the process (tsx cost ~1.5 s of start-up and tens of MB per process).
 *
 * One esbuild bundle from the CLI's entry: whatever it imports, wherever it lives, is in
 * it (no list of folders to keep in step with the tree); the `import()`s that load
 * subcommands and heavy modules lazily become separate chunks, loaded as lazily.
 *
 * npm packages are bundled too, minified: every CommonJS file loaded from node_modules costs
 * a module record, a wrapper function and its source kept for lazy compilation, and the
 * daemons load hundreds (fastify, undici, pino, prom-client, @peculiar/x509, jose); in a few
 * chunks they cost an idle agent ~10 MB less RSS (bench/startup.ts). Names are kept
 * (`keepNames`: error and class names are part of what users see) and the linked source
 * maps make a stack trace readable again (`node --enable-source-maps`). CommonJS code in the
 * ES module chunks still finds `require` (REQUIRE_BANNER). A package imported with `import()`
 * must go through one of our modules (the plugin below refuses the build otherwise).
 * What stays external, loaded from node_modules as before:
 * - better-sqlite3: a native addon, found by `bindings` beside its own files;
 * - assemblyscript: the compiler reads its standard library beside its source;
 * - @grpc/*, protobufjs: loaded only by agents that serve Envoy and by `palisade envoy`;
 *   proto-loader reads .proto files through protobufjs, which finds its optional modules
 *   with a require hidden from bundlers (`inquire`);
 * - esbuild: runs its native binary, found beside its own files (`palisade audit verify`
 *   bundles its helper thread's code with it: audit/helpers.ts).
 * - @fastify/ajv-compiler, @fastify/fast-json-stringify-compiler, light-my-request: fastify
 *   requires them only when a route declares a schema and for `inject()`; bundled, their
 *   code (with ajv, fast-json-stringify and fast-uri: ~400 KB of source) sat in the chunk
 *   every fastify user loads, kept in memory by an agent with --admin that never runs it
 *   (agent/identity/admin.ts refuses schemas): ~0.7 MB of its RSS (bench/startup.ts).
 *   Whoever needs them (the control plane) loads them from node_modules when fastify asks.
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
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { build, type Plugin } from 'esbuild';

const ROOT = path.resolve(import.meta.dirname, '..');
const ENTRY = 'cli/main.ts';
const OUT = 'dist';
/** What npm rewrites whenever it changes node_modules. */
const NPM_INSTALLED = 'node_modules/.package-lock.json';

/** Packages that stay imports from node_modules (see above); every other one is bundled. */
const EXTERNAL = /^(better-sqlite3|assemblyscript|@grpc\/[^/]+|protobufjs|esbuild|@fastify\/ajv-compiler|@fastify\/fast-json-stringify-compiler|light-my-request)(\/|$)/;

const externalPackages: Plugin = {
  name: 'external-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, ({ path: specifier, kind, importer }) => {
      if (EXTERNAL.test(specifier)) return { path: specifier, external: true };
      // esbuild's split chunk for a CommonJS package imported with import() exports only
      // `default`, so `(await import('prom-client')).Counter` would be undefined in dist/ alone.
      if (kind === 'dynamic-import' && !specifier.startsWith('node:') && !importer.includes('node_modules/')) {
        return { errors: [{ text: `import('${specifier}'): import the package statically from a module that is itself loaded lazily` }] };
      }
      return undefined;
    });
  },
};

/** CommonJS packages in an ES module bundle still call `require` (builtins, optional dependencies). */
const REQUIRE_BANNER = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

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
    minify: true,
    keepNames: true,
    banner: { js: REQUIRE_BANNER },
    metafile: true,
    logLevel: 'warning',
    plugins: [externalPackages, sourceLocation],
  });
  // Not every package file (node_modules may be a symlink, and ~700 stats would slow every
  // start): npm rewrites node_modules/.package-lock.json on every install, update or removal,
  // so a package changed without a rebuild (a security fix) makes dist/ stale, and
  // bin/palisade.js runs the sources, which load the packages as installed.
  const inputs = Object.keys(result.metafile.inputs).filter((f) => !f.includes('node_modules/'));
  if (existsSync(path.join(ROOT, NPM_INSTALLED))) inputs.push(NPM_INSTALLED);
  writeFileSync(path.join(ROOT, OUT, 'inputs.json'), `${JSON.stringify({ builtAt, inputs }, null, 1)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) await buildCli();
