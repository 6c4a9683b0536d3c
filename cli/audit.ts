/**
 * `palisade audit verify|query|prove DIR`: the agent's audit log (audit/, docs/audit.md),
 * read offline. `verify` exits 1 naming the first entry or checkpoint that fails.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from './errors.ts';
import { verifyLog, VerifyError, type TrustedCheckpoint } from '../audit/verify.ts';
import { chainFileOf, listCheckpoints, storedLines, ORIGIN } from '../audit/files.ts';
import { inclusionProof } from '../audit/proof.ts';
import { MerkleTree, leafHash } from '../audit/merkle.ts';
import { parseCheckpoint } from '../audit/checkpoint.ts';
import type { AuditEntry } from '../audit/entry.ts';

export function register(program: Command): void {
  const audit = program.command('audit').description("the agent's tamper-evident decision log (--audit-dir): verify, query, prove");
  audit.command('verify')
    .description('check every entry, fingerprint, checkpoint signature and chain, and consistency; exit 1 at the first failure')
    .argument('<dir>', 'the audit directory (palisade agent --audit-dir)')
    .requiredOption('--bundle <file>', 'trust bundle (PEM) of the trust domain')
    .option('--checkpoint <file>', 'a checkpoint kept elsewhere (its chain as FILE.pem beside it): catches truncation and rollback')
    .action(async (dir: string, opts: { bundle: string; checkpoint?: string }) => {
      const bundle = readText(opts.bundle, 'trust bundle');
      const trusted: TrustedCheckpoint | undefined = opts.checkpoint
        ? { text: readText(opts.checkpoint, 'checkpoint'), chainPem: readText(chainFileOf(opts.checkpoint), 'checkpoint chain'), name: opts.checkpoint }
        : undefined;
      isLog(dir);
      try {
        const result = await verifyLog(dir, bundle, trusted);
        const tail = result.unsigned ? ` (${result.unsigned} newest not yet under a checkpoint)` : '';
        process.stdout.write(`verified ${result.entries} entries, ${result.checkpoints} checkpoints${tail}\n`);
      } catch (err) {
        if (err instanceof VerifyError) throw new CliError(`audit log ${dir} FAILED: ${err.message}`, 1);
        throw new CliError(`cannot verify ${dir}: ${(err as Error).message}`);
      }
    });
  audit.command('query')
    .description('print entries that match every filter given')
    .argument('<dir>', 'the audit directory')
    .option('--since <time>', 'entries at or after this ISO 8601 time')
    .option('--until <time>', 'entries before this ISO 8601 time')
    .option('--caller <spiffe-id>', "the caller's SPIFFE ID")
    .option('--service <spiffe-id>', 'the service the request was for')
    .option('--user <sub>', "the end user's sub")
    .option('--decision <decision>', 'allow, deny, unauthenticated or error')
    .option('--format <format>', 'json (one entry a line) or table', 'table')
    .action((dir: string, opts: QueryOptions) => query(dir, opts));
  audit.command('prove')
    .description('print an inclusion proof of one entry in the latest checkpoint covering it (JSON; docs/audit.md)')
    .argument('<dir>', 'the audit directory')
    .requiredOption('--entry <n>', 'the entry number (seq)')
    .action((dir: string, opts: { entry: string }) => prove(dir, opts.entry));
}

interface QueryOptions {
  since?: string;
  until?: string;
  caller?: string;
  service?: string;
  user?: string;
  decision?: string;
  format: string;
}

function query(dir: string, opts: QueryOptions): void {
  if (opts.format !== 'json' && opts.format !== 'table') throw new CliError(`--format must be json or table, not ${JSON.stringify(opts.format)}`, 2);
  const time = (flag: string, value?: string) => {
    if (value === undefined) return undefined;
    const t = Date.parse(value);
    if (Number.isNaN(t)) throw new CliError(`${flag} must be an ISO 8601 time, not ${JSON.stringify(value)}`, 2);
    return t;
  };
  const since = time('--since', opts.since);
  const until = time('--until', opts.until);
  isLog(dir);
  const rows: string[][] = [];
  for (const line of storedLines(dir)) {
    if ('torn' in line) break;
    let e: AuditEntry;
    try {
      e = JSON.parse(line.text);
    } catch {
      throw new CliError(`${line.where}: not an audit entry; run palisade audit verify`);
    }
    const t = Date.parse(e.time);
    if ((since !== undefined && t < since) || (until !== undefined && t >= until)) continue;
    if ((opts.caller && e.caller?.id !== opts.caller) || (opts.service && e.service !== opts.service)) continue;
    if ((opts.user && e.user?.claims.sub !== opts.user) || (opts.decision && e.decision !== opts.decision)) continue;
    if (opts.format === 'json') process.stdout.write(`${line.text}\n`);
    else rows.push([String(e.seq), e.time, e.caller?.id ?? '-', String(e.user?.claims.sub ?? '-'), e.method, e.path, e.decision, String(e.status), e.rule ?? '-', e.mode ?? '-']);
  }
  if (opts.format === 'table') process.stdout.write(table(['SEQ', 'TIME', 'CALLER', 'USER', 'METHOD', 'PATH', 'DECISION', 'STATUS', 'RULE', 'MODE'], rows));
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function prove(dir: string, entryFlag: string): void {
  if (!/^[0-9]{1,16}$/.test(entryFlag)) throw new CliError('--entry must be an entry number', 2);
  const index = Number(entryFlag);
  isLog(dir);
  const tree = new MerkleTree();
  let entry: string | undefined;
  for (const line of storedLines(dir)) {
    if ('torn' in line) break;
    if (tree.size === index) entry = line.text;
    tree.append(leafHash(line.bytes));
  }
  if (entry === undefined) throw new CliError(`the log has ${tree.size} entries; there is no entry ${index}`, 2);
  const file = listCheckpoints(dir).find((f) => {
    const size = parseCheckpoint(readFileSync(f, 'utf8')).size;
    return size > index && size <= tree.size;
  });
  if (!file) throw new CliError(`no checkpoint covers entry ${index} yet`);
  const proof = inclusionProof(tree, entry, index, { text: readFileSync(file, 'utf8'), chainPem: readFileSync(chainFileOf(file), 'utf8') });
  if (proof.root_hash !== parseCheckpoint(proof.checkpoint).root.toString('base64')) throw new CliError(`the entries do not match ${file}; run palisade audit verify`);
  process.stdout.write(`${JSON.stringify(proof, null, 2)}\n`);
}

function isLog(dir: string): void {
  if (!existsSync(`${dir}/${ORIGIN}`)) throw new CliError(`${dir} is not an audit log (no ${ORIGIN} file)`, 2);
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
}
