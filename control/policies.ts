/**
 * Policies and their versions. Every change (a submitted policy, a mode switch, a rollback)
 * is a new version, compiled before it is recorded, with who made it and when; the current
 * version of each policy is what its service's agents run. A committed change is announced
 * on CHANGES_CHANNEL, so every replica on the same store pushes it to its subscribers.
 */
import { formatDiagnostic, type Diagnostic, type Mode } from '../compiler/frontend/ast.ts';
import type { Manifest } from '../compiler/index.ts';
import type { Queryable, Store } from '../store/store.ts';
import { compileService } from './compile.ts';
import { ControlError } from './errors.ts';
import type { Operator } from './tokens.ts';

export const CHANGES_CHANNEL = 'palisade_control_policies';
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MODES: readonly Mode[] = ['enforce', 'dry-run'];

export type Change = 'submit' | 'mode' | 'rollback';

export interface VersionSummary {
  name: string;
  version: number;
  change: Change;
  mode: Mode;
  sha256: string;
  changed_by: { token_id: string; name: string };
  changed_at: string;
}

export interface VersionDetail extends VersionSummary {
  service: string;
  source: string;
  manifest: Manifest;
}

/** What an agent is sent for a service: the current version's filter. */
export interface ServiceFilter {
  policy: string;
  version: number;
  sha256: string;
  /** base64 */
  wasm: string;
}

type VersionRow = {
  name: string;
  version: number | string;
  change: Change;
  mode: Mode;
  sha256: string;
  actor_id: string;
  actor_name: string;
  created_at: number | string;
  source?: string;
  manifest?: string;
  wasm?: string;
};

const SUMMARY = 'name, version, change, mode, sha256, actor_id, actor_name, created_at';

export class PolicyRegistry {
  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** Compiles `source` and records it as the next version of `name`; bad policies are a 400 with diagnostics. */
  async submit(name: string, source: string, by: Operator): Promise<VersionSummary> {
    checkName(name);
    return this.record(name, source, 'submit', by);
  }

  /** The current source with another mode, as a new version. Asking for the mode it has changes nothing. */
  async setMode(name: string, mode: unknown, by: Operator): Promise<VersionSummary> {
    if (!MODES.includes(mode as Mode)) throw new ControlError(400, 'bad_request', `body must be { "mode": "${MODES.join('" | "')}" }`);
    const current = await this.current(name);
    if (current.mode === mode) {
      const { service: _service, source: _source, manifest: _manifest, ...unchanged } = current;
      return unchanged;
    }
    const source = `${JSON.stringify({ ...JSON.parse(current.source), mode }, null, 2)}\n`;
    return this.record(name, source, 'mode', by);
  }

  /** Makes version `to` (default: the one before the current) current again, as a new version with its bytes. */
  async rollback(name: string, to: unknown, by: Operator): Promise<VersionSummary> {
    const current = await this.current(name);
    const target = to === undefined ? current.version - 1 : to;
    if (!Number.isInteger(target) || (target as number) < 1 || (target as number) >= current.version) {
      throw new ControlError(400, 'bad_request', `rollback needs an earlier version: { "version": 1…${current.version - 1} } or {} for the previous one`);
    }
    const earlier = await this.version(name, target as number);
    return this.store.transaction(async (tx) => {
      const row = await this.append(tx, name, earlier.service, { ...earlier, change: 'rollback' }, by);
      return summary(row);
    });
  }

  async list(): Promise<(VersionSummary & { service: string })[]> {
    const rows = await this.store.query<VersionRow & { service: string }>(
      `SELECT v.name, v.version, v.change, v.mode, v.sha256, v.actor_id, v.actor_name, v.created_at, p.service
         FROM control_policies p JOIN control_policy_versions v ON v.name = p.name AND v.version = p.current_version
        ORDER BY v.name`,
    );
    return rows.map((row) => ({ ...summary(row), service: row.service }));
  }

  async current(name: string): Promise<VersionDetail> {
    const [row] = await this.store.query<{ current_version: number | string }>('SELECT current_version FROM control_policies WHERE name = $1', [name]);
    if (!row) throw notFound(name);
    return this.version(name, Number(row.current_version));
  }

  async versions(name: string): Promise<VersionSummary[]> {
    const rows = await this.store.query<VersionRow>(`SELECT ${SUMMARY} FROM control_policy_versions WHERE name = $1 ORDER BY version`, [name]);
    if (rows.length === 0) throw notFound(name);
    return rows.map(summary);
  }

  async version(name: string, version: number): Promise<VersionDetail> {
    const [row] = await this.store.query<VersionRow>(
      `SELECT ${SUMMARY}, source, manifest FROM control_policy_versions WHERE name = $1 AND version = $2`, [name, version],
    );
    if (!row) throw new ControlError(404, 'not_found', `policy ${name} has no version ${version}`);
    return detail(row);
  }

  /** The current filter of the policy protecting `service`, if there is one. */
  async filterFor(service: string): Promise<ServiceFilter | null> {
    const [row] = await this.store.query<{ name: string; version: number | string; sha256: string; wasm: string }>(
      `SELECT v.name, v.version, v.sha256, v.wasm
         FROM control_policies p JOIN control_policy_versions v ON v.name = p.name AND v.version = p.current_version
        WHERE p.service = $1`, [service],
    );
    return row ? { policy: row.name, version: Number(row.version), sha256: row.sha256, wasm: row.wasm } : null;
  }

  /** The service a policy currently protects (for a change notification). */
  async serviceOf(name: string): Promise<string | undefined> {
    const [row] = await this.store.query<{ service: string }>('SELECT service FROM control_policies WHERE name = $1', [name]);
    return row?.service;
  }

  private async record(name: string, source: string, change: Change, by: Operator): Promise<VersionSummary> {
    const compiled = await compileService(name, source);
    if (!compiled.ok) throw invalidPolicy(compiled.diagnostics);
    const { manifest, wasm } = compiled;
    if (manifest.name !== name) {
      throw new ControlError(400, 'name_mismatch', `the policy is named "${manifest.name}" but was submitted as "${name}"`);
    }
    return this.store.transaction(async (tx) => {
      const [other] = await tx.query<{ name: string }>('SELECT name FROM control_policies WHERE service = $1 AND name <> $2', [manifest.service, name]);
      if (other) throw new ControlError(409, 'service_taken', `${manifest.service} is already protected by policy ${other.name}: one policy per service`);
      const version = { change, mode: manifest.mode, source, sha256: manifest.wasm.sha256, wasm: Buffer.from(wasm).toString('base64'), manifest };
      return summary(await this.append(tx, name, manifest.service, version, by));
    });
  }

  private async append(
    tx: Queryable,
    name: string,
    service: string,
    v: { change: Change; mode: Mode; source: string; sha256: string; manifest: Manifest; wasm?: string },
    by: Operator,
  ): Promise<VersionRow> {
    const [last] = await tx.query<{ version: number | string | null }>('SELECT MAX(version) AS version FROM control_policy_versions WHERE name = $1', [name]);
    const version = Number(last?.version ?? 0) + 1;
    const wasm = v.wasm ?? (await this.wasmOf(tx, name, v.sha256));
    const row: VersionRow = {
      name, version, change: v.change, mode: v.mode, sha256: v.sha256, actor_id: by.id, actor_name: by.name, created_at: this.now(),
    };
    await tx.run(
      `INSERT INTO control_policy_versions (name, version, change, mode, source, sha256, wasm, manifest, actor_id, actor_name, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [name, version, v.change, v.mode, v.source, v.sha256, wasm, JSON.stringify(v.manifest), by.id, by.name, row.created_at],
    );
    await tx.run(
      `INSERT INTO control_policies (name, service, current_version) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET service = excluded.service, current_version = excluded.current_version`,
      [name, service, version],
    );
    await tx.notify(CHANGES_CHANNEL, name);
    return row;
  }

  /** The stored bytes of an earlier version (a rollback reuses them, so the sha256 is the same). */
  private async wasmOf(tx: Queryable, name: string, sha256: string): Promise<string> {
    const [row] = await tx.query<{ wasm: string }>('SELECT wasm FROM control_policy_versions WHERE name = $1 AND sha256 = $2 ORDER BY version DESC LIMIT 1', [name, sha256]);
    return row!.wasm;
  }
}

function checkName(name: string): void {
  if (!NAME.test(name)) throw new ControlError(400, 'bad_name', 'a policy name is 1–63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');
}

const notFound = (name: string) => new ControlError(404, 'not_found', `no policy ${name}`);

/** The CLI's diagnostics, as JSON: every one located by file, line, column and JSON pointer. */
function invalidPolicy(diagnostics: Diagnostic[]): ControlError {
  const errors = diagnostics.filter((d) => d.severity === 'error');
  return new ControlError(400, 'invalid_policy', errors.map(formatDiagnostic).join('\n'), {
    diagnostics: diagnostics.map((d) => ({ severity: d.severity, message: d.message, ...d.span })),
  });
}

function summary(row: VersionRow): VersionSummary {
  return {
    name: row.name,
    version: Number(row.version),
    change: row.change,
    mode: row.mode,
    sha256: row.sha256,
    changed_by: { token_id: row.actor_id, name: row.actor_name },
    changed_at: new Date(Number(row.created_at)).toISOString(),
  };
}

function detail(row: VersionRow): VersionDetail {
  const manifest = JSON.parse(row.manifest!) as Manifest;
  return { ...summary(row), service: manifest.service, source: row.source!, manifest };
}
