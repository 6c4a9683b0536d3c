import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { failCompile, readInput } from './inputs.ts';
import { analyze } from '../compiler/frontend/index.ts';
import type { CheckedPolicy } from '../compiler/frontend/ast.ts';
import { diffPolicies, type Region } from '../diff/index.ts';
import type { Replay, Replayed, Verdict } from '../diff/replay.ts';

/**
 * `palisade diff OLD NEW [--replay AUDIT_DIR|DECISIONS.jsonl] [--format text|json]`: every
 * region of requests the two versions decide differently (diff/index.ts), each with a
 * witness request in the case-file `request` format that `palisade eval` decides the same
 * way; with `--replay`, the recorded requests the compiled versions decide differently
 * (diff/replay.ts). Exit 0 when the versions are equivalent, 1 when they differ (CI can
 * gate on it), 2 for unusable input.
 */
export function register(program: Command): void {
  program.command('diff')
    .description('the requests two versions of a policy decide differently, with a witness each')
    .argument('<old>', 'the current policy file')
    .argument('<new>', 'the proposed policy file')
    .option('--replay <log>', 'also replay recorded requests: an audit log directory, or a decision log / audit query JSON-lines file')
    .option('--format <format>', 'text or json', 'text')
    .action(async (oldFile: string, newFile: string, opts: { format: string; replay?: string }) => {
      if (opts.format !== 'text' && opts.format !== 'json') throw new CliError(`--format must be "text" or "json", not "${opts.format}"`, 2);
      const [oldText, newText] = [oldFile, newFile].map((f) => readInput(f, 'policy').toString('utf8'));
      const [a, b] = [checked(oldFile, oldText), checked(newFile, newText)];
      if (a.service !== b.service) throw new CliError(`${oldFile} protects ${a.service}, ${newFile} protects ${b.service}: diff compares versions of one service's policy`, 2);
      const replayed = opts.replay === undefined ? undefined : await replayLog(opts.replay, [oldFile, oldText], [newFile, newText], a.service);
      const regions = diffPolicies(a, b);
      const equivalent = regions.length === 0 && !replayed?.changed.length;
      process.stdout.write(opts.format === 'json'
        ? `${JSON.stringify({ equivalent, regions, ...(replayed ? { replay: replayed } : {}) }, null, 2)}\n`
        : text(regions) + (replayed ? replayText(replayed) : ''));
      if (!equivalent) throw new CliError('', 1);
    });
}

function checked(file: string, text: string): CheckedPolicy {
  const { policy, diagnostics } = analyze(file, text);
  if (!policy) failCompile(file, diagnostics);
  return policy;
}

/** The log's records through both compiled versions; the replay's modules load only for `--replay`. */
async function replayLog(log: string, [oldFile, oldText]: string[], [newFile, newText]: string[], service: string): Promise<Replay> {
  const { ObservedError, parseObserved } = await import('../learn/observed.ts');
  const { replay } = await import('../diff/replay.ts');
  const { compileWithCache } = await import('../testing/filter-cache.ts');
  let observed;
  try {
    observed = (await recordedLines(log)).flatMap(([where, lines]) => parseObserved(where, lines));
  } catch (err) {
    if (err instanceof ObservedError) throw new CliError(err.message, 2);
    throw err;
  }
  const warn = (line: string) => process.stderr.write(`palisade: warning: ${line}\n`);
  const wasm = [];
  for (const [file, text] of [[oldFile, oldText], [newFile, newText]]) {
    const compiled = await compileWithCache(file, text, true, warn);
    if (!compiled.ok) failCompile(file, compiled.diagnostics);
    wasm.push(compiled.wasm);
  }
  return replay(wasm[0], wasm[1], service, observed);
}

/** The text to parse, per file: an audit log's segments (complete lines only, as `palisade audit query` reads them), or the file. */
async function recordedLines(log: string): Promise<[string, string][]> {
  let dir = false;
  try {
    dir = statSync(log).isDirectory();
  } catch {
    // readInput below says why the file cannot be read.
  }
  if (!dir) return [[log, readInput(log, 'decisions').toString('utf8')]];
  const { existsSync } = await import('node:fs');
  const { ORIGIN, storedLines } = await import('../audit/files.ts');
  if (!existsSync(`${log}/${ORIGIN}`)) throw new CliError(`${log} is not an audit log (no ${ORIGIN} file)`, 2);
  const segments = new Map<string, string[]>();
  for (const line of storedLines(log)) {
    if ('torn' in line) break;
    const file = `${log}/${line.file}`;
    segments.set(file, [...(segments.get(file) ?? []), line.text]);
  }
  return [...segments].map(([file, lines]) => [file, lines.join('\n')]);
}

function text(regions: Region[]): string {
  if (!regions.length) return 'equivalent: no request is decided differently\n';
  const show = (d: Region['old']) => `${d.decision} ${d.status}${Object.keys(d.inject).length ? ` inject ${JSON.stringify(d.inject)}` : ''}`;
  const lines = regions.flatMap((r) => [
    `${show(r.old)} → ${show(r.new)}: callers ${r.callers} × ${r.method} × ${r.paths}${r.condition === 'true' ? '' : ` if ${r.condition}`}`,
    `  witness: ${r.witness ? JSON.stringify(r.witness) : 'none found (the difference depends on a condition; cell ' + JSON.stringify(r.cell) + ')'}`,
  ]);
  return `${lines.join('\n')}\n${regions.length} region${regions.length === 1 ? '' : 's'} decided differently\n`;
}

/** At most this many records of each list in text (JSON lists all). */
const SHOWN = 50;

function replayText(r: Replay): string {
  const verdict = (v: Verdict) => `${v.decision} ${v.status}`;
  const row = (x: Replayed, what: string) => `  ${x.time ?? '-'} ${x.caller ?? '(no caller)'} ${x.method} ${x.path}: ${what}`;
  const list = (rows: string[]) => [...rows.slice(0, SHOWN), ...(rows.length > SHOWN ? [`  … ${rows.length - SHOWN} more (--format json lists all)`] : [])];
  return [
    `replay: ${r.requests} recorded request${r.requests === 1 ? '' : 's'}${r.otherServices ? ` (${r.otherServices} for other services skipped)` : ''}, ${r.changed.length} decided differently`,
    ...list(r.changed.map((x) => row(x, `${verdict(x.old)} → ${verdict(x.new)}${x.recorded ? ` (recorded ${x.recorded})` : ''}`))),
    ...(r.unlike.length ? [`${r.unlike.length} recorded decision${r.unlike.length === 1 ? ' is' : 's are'} not OLD's (logged under another version, or decided on headers or query values the log does not keep):`] : []),
    ...list(r.unlike.map((x) => row(x, `recorded ${x.recorded}, OLD ${verdict(x.old)}`))),
  ].join('\n') + '\n';
}
