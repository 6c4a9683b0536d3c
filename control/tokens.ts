/**
 * Operator bearer tokens. A token is `pct_<id>_<secret>`: the id finds the row, the secret
 * is stored only as its sha256 and compared in constant time. The whole token is shown once,
 * at creation; losing it means creating another.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../store/store.ts';

export type Role = 'admin' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'viewer'];

/** Who made a change: recorded with every policy version. */
export interface Operator {
  id: string;
  name: string;
  role: Role;
}

const TOKEN = /^pct_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const digest = (secret: string) => createHash('sha256').update(secret).digest();

export async function createToken(db: Queryable, role: Role, name: string, now = Date.now()): Promise<{ token: string; operator: Operator }> {
  if (!ROLES.includes(role)) throw new Error(`role must be ${ROLES.join(' or ')}`);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await db.run('INSERT INTO control_tokens (id, name, role, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5)', [
    id, name, role, digest(secret).toString('hex'), now,
  ]);
  return { token: `pct_${id}_${secret}`, operator: { id, name, role } };
}

/** The operator a presented token belongs to, or undefined for anything else. */
export async function authenticate(db: Queryable, presented: string): Promise<Operator | undefined> {
  const match = TOKEN.exec(presented);
  if (!match) return undefined;
  const [, id, secret] = match;
  const [row] = await db.query<{ name: string; role: Role; secret_sha256: string }>(
    'SELECT name, role, secret_sha256 FROM control_tokens WHERE id = $1', [id],
  );
  if (!row || !timingSafeEqual(digest(secret!), Buffer.from(row.secret_sha256, 'hex'))) return undefined;
  return { id: id!, name: row.name, role: row.role };
}
