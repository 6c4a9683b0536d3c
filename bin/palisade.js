#!/usr/bin/env node
// Runs the CLI built into dist/ by `npm run build` (npm install and npm ci run it through
// `prepare`). When the build is missing, or older than a source it was built from (an edit,
// a checkout), the TypeScript sources run through tsx instead: correct, but seconds slower
// to start and heavier, so say so.
import { readFileSync, statSync } from 'node:fs';

const root = new URL('..', import.meta.url);

/** Why dist/ cannot be used, or null when it is current. */
function staleBuild() {
  let built;
  try {
    built = JSON.parse(readFileSync(new URL('dist/inputs.json', root), 'utf8'));
  } catch {
    return 'dist/ is not built';
  }
  for (const file of built.inputs) {
    let mtime;
    try {
      mtime = statSync(new URL(file, root)).mtimeMs;
    } catch {
      return `dist/ was built from ${file}, which is gone`;
    }
    if (mtime > built.builtAt) return `${file} changed after dist/ was built`;
  }
  return null;
}

const stale = staleBuild();
let main;
if (stale) {
  process.stderr.write(`palisade: ${stale}; running the TypeScript sources through tsx (slow start; \`npm run build\` fixes it)\n`);
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../cli/main.ts'));
} else {
  ({ main } = await import('../dist/main.js'));
}
await main(process.argv);
