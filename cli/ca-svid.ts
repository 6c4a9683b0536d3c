import { Command } from 'commander';
import type { SvidRow } from '../ca/store.ts';
import { STORE_OPTION, withCa } from './ca-access.ts';
import { CliError } from './errors.ts';

/** `palisade ca svid list`: what the CA issued, for audits and before revoking. */
export function svidCommand(): Command {
  const svid = new Command('svid').description('SVIDs issued by this CA');
  svid
    .command('list')
    .description('every SVID issued (or those of one identity): serial, lineage, expiry, status')
    .requiredOption('--dir <dir>', 'CA state directory')
    .option(...STORE_OPTION)
    .option('--spiffe-id <id>', 'only this identity')
    .option('--format <format>', 'table or json', 'table')
    .action(async (opts: { dir: string; store?: string; spiffeId?: string; format: string }) => {
      if (opts.format !== 'table' && opts.format !== 'json') throw new CliError('--format must be table or json', 2);
      const rows = await withCa(opts, (authority) => authority.svids(opts.spiffeId));
      process.stdout.write(opts.format === 'json' ? `${JSON.stringify(rows.map(toJson), null, 2)}\n` : table(rows));
    });
  return svid;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function toJson(row: SvidRow) {
  return {
    serial: row.serial,
    spiffe_id: row.spiffeId,
    predecessor: row.predecessor,
    status: row.status,
    not_before: iso(row.notBefore),
    not_after: iso(row.notAfter),
    issued_at: iso(row.issuedAt),
    superseded_at: iso(row.supersededAt),
    revoked_at: iso(row.revokedAt),
  };
}

function table(rows: SvidRow[]): string {
  const header = ['SERIAL', 'SPIFFE ID', 'RENEWED FROM', 'NOT AFTER', 'STATUS'];
  const cells = rows.map((row) => [row.serial, row.spiffeId, row.predecessor ?? '-', iso(row.notAfter)!, row.status]);
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((cell) => cell[i]!.length)));
  return [header, ...cells].map((line) => `${line.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()}\n`).join('');
}
