/**
 * Policies and their versions. A policy is a service's own or a scope layer above services
 * (docs/policy.md, "Layers"). Every change (a submission, a mode switch, a rollback) is a
 * new version, compiled before it is recorded, with who made it and when; a change to a
 * layer is also a new version of every service policy below it, recompiled with it. The
 * current version of a service policy is what that service's agents run. A committed change
 * is announced on CHANGES_CHANNEL, so every replica on the same store pushes it.
 */
import { createHash } from 'node:crypto';
import { formatDiagnostic, type Diagnostic, type Mode } from '../compiler/frontend/ast.ts';
import type { Manifest } from '../compiler/index.ts';
import type { Queryable, Store } from '../store/store.ts';
import { analyzeDocument, compileService, policyFile, scopeContains, type Document } from './compile.ts';
import { ControlError } from './errors.ts';
import type { Operator } from './tokens.ts';

export const CHANGES_CHANNEL = 'palisade_control_policies';
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MODES: readonly Mode[] = ['enforce', 'dry-run'];

/** `layer`: a new composition because a layer above the service changed (`cause` names it). */
export type Change = 'submit' | 'mode' | 'rollback' | 'layer';

export interface VersionSummary {
  name: string;
  version: number;
  change: Change;
  /** For a `layer` change: which layer version caused it, `<layer> v<n>`. */
  cause: string | null;
  mode: Mode;
  /** A service policy: its filter's; a layer: its source's. */
  sha256: string;
  changed_by: { token_id: string; name: string };
  changed_at: string;
}

export interface VersionDetail extends VersionSummary {
  kind: 'service' | 'scope';
  /** The service's SPIFFE ID, or the layer's scope. */
  level: string;
  source: string;
  /** A service policy's manifest (every layer's sha256 included); a layer's file and sha256. */
  manifest: Manifest | LayerManifest;
}

export interface LayerManifest {
  name: string;
  scope: string;
  mode: Mode;
  source: { file: string; sha256: string };
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
  cause: string | null;
  mode: Mode;
  sha256: string;
  actor_id: string;
  actor_name: string;
  created_at: number | string;
  kind?: 'service' | 'scope';
  level?: string;
  source?: string;
  manifest?: string;
};

/** A version about to be recorded. */
interface NewVersion {
  name: string;
  kind: 'service' | 'scope';
  level: string;
  change: Change;
  cause?: string;
  mode: Mode;
  source: string;
  sha256: string;
  wasm: string | null;
  manifest: Manifest | LayerManifest;
}

const SUMMARY = 'v.name, v.version, v.change, v.cause, v.mode, v.sha256, v.actor_id, v.actor_name, v.created_at';
const CURRENT = 'control_policies p JOIN control_policy_versions v ON v.name = p.name AND v.version = p.current_version';

export class PolicyRegistry {
  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** Compiles `source` and records it as the next version of `name`; bad policies are a 400 with diagnostics. */
  async submit(name: string, source: string, by: Operator): Promise<VersionSummary> {
    if (!NAME.test(name)) throw new ControlError(400, 'bad_name', 'a policy name is 1–63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');
    return this.record({ name, source }, 'submit', by);
  }

  /** The current source with another mode, as a new version. Asking for the mode it has changes nothing. */
  async setMode(name: string, mode: unknown, by: Operator): Promise<VersionSummary> {
    if (!MODES.includes(mode as Mode)) throw new ControlError(400, 'bad_request', `body must be { "mode": "${MODES.join('" | "')}" }`);
    const current = await this.current(name);
    const own = current.kind === 'service' ? JSON.parse(current.source).mode ?? 'enforce' : current.mode;
    if (own === mode) return summaryOf(current);
    return this.record({ name, source: `${JSON.stringify({ ...JSON.parse(current.source), mode }, null, 2)}\n` }, 'mode', by);
  }

  /**
   * Makes version `to` (default: the one before the current) current again, as a new version:
   * its source composed with the layers as they are now, so rolling a service back never lifts
   * a layer's newer deny. With the layers unchanged, the bytes (and sha256) are the earlier ones.
   */
  async rollback(name: string, to: unknown, by: Operator): Promise<VersionSummary> {
    const current = await this.current(name);
    const target = to === undefined ? current.version - 1 : to;
    if (!Number.isInteger(target) || (target as number) < 1 || (target as number) >= current.version) {
      throw new ControlError(400, 'bad_request', `rollback needs an earlier version: { "version": 1…${current.version - 1} } or {} for the previous one`);
    }
    const earlier = await this.version(name, target as number);
    return this.record({ name, source: earlier.source }, 'rollback', by);
  }

  async list(): Promise<(VersionSummary & { kind: string; level: string })[]> {
    const rows = await this.store.query<VersionRow & { kind: string; level: string }>(`SELECT ${SUMMARY}, p.kind, p.level FROM ${CURRENT} ORDER BY v.name`);
    return rows.map((row) => ({ ...summary(row), kind: row.kind, level: row.level }));
  }

  async current(name: string): Promise<VersionDetail> {
    const [row] = await this.store.query<{ current_version: number | string }>('SELECT current_version FROM control_policies WHERE name = $1', [name]);
    if (!row) throw new ControlError(404, 'not_found', `no policy ${name}`);
    return this.version(name, Number(row.current_version));
  }

  async versions(name: string): Promise<VersionSummary[]> {
    const rows = await this.store.query<VersionRow>(`SELECT ${SUMMARY} FROM control_policy_versions v WHERE v.name = $1 ORDER BY v.version`, [name]);
    if (rows.length === 0) throw new ControlError(404, 'not_found', `no policy ${name}`);
    return rows.map(summary);
  }

  async version(name: string, version: number): Promise<VersionDetail> {
    const [row] = await this.store.query<VersionRow>(
      `SELECT ${SUMMARY}, p.kind, v.source, v.manifest FROM control_policy_versions v JOIN control_policies p ON p.name = v.name
        WHERE v.name = $1 AND v.version = $2`, [name, version],
    );
    if (!row) throw new ControlError(404, 'not_found', `policy ${name} has no version ${version}`);
    const manifest = JSON.parse(row.manifest!) as Manifest | LayerManifest;
    return { ...summary(row), kind: row.kind!, level: 'scope' in manifest ? manifest.scope : manifest.service, source: row.source!, manifest };
  }

  /** The current filter of the policy protecting `service`, if there is one. */
  async filterFor(service: string): Promise<ServiceFilter | null> {
    const [row] = await this.store.query<{ name: string; version: number | string; sha256: string; wasm: string }>(
      `SELECT v.name, v.version, v.sha256, v.wasm FROM ${CURRENT} WHERE p.kind = 'service' AND p.level = $1`, [service],
    );
    return row ? { policy: row.name, version: Number(row.version), sha256: row.sha256, wasm: row.wasm } : null;
  }

  /** The service a policy currently protects (for a change notification); undefined for a layer. */
  async serviceOf(name: string): Promise<string | undefined> {
    const [row] = await this.store.query<{ level: string }>("SELECT level FROM control_policies WHERE name = $1 AND kind = 'service'", [name]);
    return row?.level;
  }

  /**
   * Compiles outside the transaction (it takes a while), so the transaction first checks that
   * no policy changed meanwhile: a service composed with layers that are no longer current, or
   * a layer recompiled over a service source that was just replaced, would put a filter in
   * force that nobody submitted. Such a race is compiled again, a few times, then a 409.
   */
  private async record(doc: Document, change: Change, by: Operator): Promise<VersionSummary> {
    for (let attempt = 1; ; attempt++) {
      const seen = await this.generation(this.store);
      const versions = await this.compileChange(doc, change);
      try {
        return await this.commit(versions, by, seen);
      } catch (err) {
        if (!(err instanceof ControlError && err.code === 'concurrent_change') || attempt >= 3) throw err;
      }
    }
  }

  private async compileChange(doc: Document, change: Change): Promise<NewVersion[]> {
    const { layer, diagnostics } = analyzeDocument(doc);
    if (!layer) throw invalidPolicy(diagnostics);
    if (layer.name !== doc.name) throw new ControlError(400, 'name_mismatch', `the policy is named "${layer.name}" but was submitted as "${doc.name}"`);
    const layers = (await this.currentDocuments('scope')).filter((l) => l.name !== doc.name);
    if (layer.level.kind === 'service') return [await this.composed(doc, layer.level.id, layers, change)];
    // A layer: every service below it is recompiled with the new layer, and all of them commit together or not at all.
    const scope = layer.level.text;
    const source = { file: policyFile(doc.name), sha256: createHash('sha256').update(doc.source).digest('hex') };
    const own: NewVersion = {
      name: doc.name, kind: 'scope', level: scope, change, mode: layer.mode, source: doc.source, sha256: source.sha256, wasm: null,
      manifest: { name: doc.name, scope, mode: layer.mode, source },
    };
    const services = (await this.currentDocuments('service')).filter((s) => scopeContains(doc, s.level));
    const below: NewVersion[] = [];
    for (const s of services) below.push({ ...(await this.composed(s, s.level, [...layers, doc], 'layer')), cause: doc.name });
    return [own, ...below];
  }

  /** Every policy's current version: equal before compiling and at commit means nothing changed in between. */
  private async generation(db: Queryable): Promise<string> {
    const rows = await db.query<{ name: string; current_version: number | string }>('SELECT name, current_version FROM control_policies ORDER BY name');
    return rows.map((r) => `${r.name}@${Number(r.current_version)}`).join(',');
  }

  /** A service policy composed with the layers above it, compiled; a composition error is the submitter's 400. */
  private async composed(doc: Document, service: string, layers: Document[], change: Change): Promise<NewVersion> {
    const compiled = await compileService(doc, service, layers);
    if (!compiled.ok) throw invalidPolicy(compiled.diagnostics);
    const { manifest, wasmBase64 } = compiled;
    return {
      name: doc.name, kind: 'service', level: service, change, mode: manifest.mode, source: doc.source, sha256: manifest.wasm.sha256,
      wasm: wasmBase64, manifest,
    };
  }

  /** Records the versions in one transaction; the first is what was asked for, and what is answered. */
  private async commit(versions: NewVersion[], by: Operator, seen: string): Promise<VersionSummary> {
    return this.store.transaction(async (tx) => {
      if ((await this.generation(tx)) !== seen) throw new ControlError(409, 'concurrent_change', 'other policy changes were committed while this one compiled; submit it again');
      const rows: VersionRow[] = [];
      for (const v of versions) {
        const [other] = await tx.query<{ name: string }>('SELECT name FROM control_policies WHERE level = $1 AND name <> $2', [v.level, v.name]);
        if (other) throw new ControlError(409, 'level_taken', `${v.level} already has policy ${other.name}: one policy per service, one layer per scope`);
        const [kind] = await tx.query<{ kind: string }>('SELECT kind FROM control_policies WHERE name = $1', [v.name]);
        if (kind && kind.kind !== v.kind) throw new ControlError(409, 'kind_changed', `${v.name} is a ${kind.kind} policy; submit the ${v.kind} under another name`);
        const cause = v.change === 'layer' ? `${v.cause} v${rows[0]!.version}` : null;
        rows.push(await this.append(tx, v, cause, by));
      }
      return summary(rows[0]!);
    });
  }

  private async append(tx: Queryable, v: NewVersion, cause: string | null, by: Operator): Promise<VersionRow> {
    const [last] = await tx.query<{ version: number | string | null }>('SELECT MAX(version) AS version FROM control_policy_versions WHERE name = $1', [v.name]);
    const version = Number(last?.version ?? 0) + 1;
    const createdAt = this.now();
    await tx.run(
      `INSERT INTO control_policy_versions (name, version, change, cause, mode, source, sha256, wasm, manifest, actor_id, actor_name, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [v.name, version, v.change, cause, v.mode, v.source, v.sha256, v.wasm, JSON.stringify(v.manifest), by.id, by.name, createdAt],
    );
    await tx.run(
      `INSERT INTO control_policies (name, kind, level, current_version) VALUES ($1, $2, $3, $4)
       ON CONFLICT (name) DO UPDATE SET level = excluded.level, current_version = excluded.current_version`,
      [v.name, v.kind, v.level, version],
    );
    if (v.kind === 'service') await tx.notify(CHANGES_CHANNEL, v.name);
    return { name: v.name, version, change: v.change, cause, mode: v.mode, sha256: v.sha256, actor_id: by.id, actor_name: by.name, created_at: createdAt };
  }

  /** The current source of every policy of one kind, with its level. */
  private async currentDocuments(kind: 'service' | 'scope'): Promise<(Document & { level: string })[]> {
    return this.store.query<{ name: string; source: string; level: string }>(`SELECT p.name, p.level, v.source FROM ${CURRENT} WHERE p.kind = $1`, [kind]);
  }
}

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
    cause: row.cause ?? null,
    mode: row.mode,
    sha256: row.sha256,
    changed_by: { token_id: row.actor_id, name: row.actor_name },
    changed_at: new Date(Number(row.created_at)).toISOString(),
  };
}

function summaryOf(detail: VersionDetail): VersionSummary {
  const { name, version, change, cause, mode, sha256, changed_by, changed_at } = detail;
  return { name, version, change, cause, mode, sha256, changed_by, changed_at };
}
