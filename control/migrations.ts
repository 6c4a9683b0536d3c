/**
 * The control plane's tables, as versioned migrations the store applies on start (in the
 * SQL both SQLite and PostgreSQL run), one statement each. Never edit an entry: append one.
 *
 * A policy is a service's own (`kind` service, `level` its SPIFFE ID) or a scope layer
 * (`kind` scope, `level` its scope); only a service's versions carry wasm (the composition),
 * kept as base64 text: one column type on both engines. A layer's sha256 is its source's.
 */
export const CONTROL_MIGRATIONS: readonly string[] = [
  `CREATE TABLE control_tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
     secret_sha256 TEXT NOT NULL,
     created_at BIGINT NOT NULL
   )`,
  `CREATE TABLE control_policies (
     name TEXT PRIMARY KEY,
     kind TEXT NOT NULL CHECK (kind IN ('service', 'scope')),
     level TEXT NOT NULL UNIQUE,
     current_version INTEGER NOT NULL
   )`,
  `CREATE TABLE control_policy_versions (
     name TEXT NOT NULL,
     version INTEGER NOT NULL,
     change TEXT NOT NULL,
     cause TEXT,
     mode TEXT NOT NULL,
     source TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     wasm TEXT,
     manifest TEXT NOT NULL,
     actor_id TEXT NOT NULL,
     actor_name TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (name, version)
   )`,
  `CREATE TABLE control_reports (
     spiffe_id TEXT NOT NULL,
     instance TEXT NOT NULL,
     policy TEXT NOT NULL,
     version INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     status TEXT NOT NULL,
     reason TEXT,
     running_version INTEGER,
     running_sha256 TEXT,
     reported_at BIGINT NOT NULL,
     PRIMARY KEY (spiffe_id, instance, policy)
   )`,
];
