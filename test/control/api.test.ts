/**
 * The operator API, on a real control plane over HTTPS: submissions compile, bad policies
 * come back with the CLI's diagnostics, every change is a version with who and when, and
 * the attacks on the API itself (no token, a wrong token, a viewer writing, a foreign Host,
 * a web page's Origin) are refused.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compilePolicy } from '../../compiler/index.ts';
import { formatDiagnostic } from '../../compiler/frontend/ast.ts';
import { startPlane, policy, CARD, LEDGER, type Plane } from './harness.ts';

const api = suite('control plane operator API');
let plane: Plane;
const card = policy('card', CARD, ['/cards/{id}']);

api.before(async () => {
  plane = await startPlane();
});
api.after(async () => {
  await plane.close();
});

api('PUT compiles and records version 1 with who and when; GET list, one, versions, versions/{n}', async () => {
  const put = await plane.api('PUT', '/v1/policies/card', { body: card });
  assert.is(put.status, 200, JSON.stringify(put.json));
  const compiled = await compilePolicy('card.policy.json', card);
  assert.ok(compiled.ok);
  assert.equal(
    { version: put.json.version, change: put.json.change, sha256: put.json.sha256, by: put.json.changed_by.name },
    { version: 1, change: 'submit', sha256: compiled.manifest.wasm.sha256, by: 'alice' },
  );
  assert.ok(Math.abs(Date.parse(put.json.changed_at) - Date.now()) < 60_000);
  const list = await plane.api('GET', '/v1/policies', { token: plane.viewer });
  assert.equal(list.json.policies.map((p: any) => [p.name, p.version, p.kind, p.level]), [['card', 1, 'service', CARD]]);
  const one = await plane.api('GET', '/v1/policies/card', { token: plane.viewer });
  assert.is(one.json.source, card);
  assert.is(one.json.manifest.wasm.sha256, put.json.sha256);
  const versions = await plane.api('GET', '/v1/policies/card/versions', { token: plane.viewer });
  assert.equal(versions.json.versions.map((v: any) => v.version), [1]);
  const v1 = await plane.api('GET', '/v1/policies/card/versions/1', { token: plane.viewer });
  assert.is(v1.json.sha256, put.json.sha256);
  assert.is((await plane.api('GET', '/v1/policies/card/versions/7')).status, 404);
  assert.is((await plane.api('GET', '/v1/policies/nope')).json.error.code, 'not_found');
});

api('a bad policy is refused with 400 and the CLI diagnostics: line, col, JSON pointer', async () => {
  const bad = card.replace('"allow"', '"permit"');
  const put = await plane.api('PUT', '/v1/policies/card', { body: bad });
  assert.is(put.status, 400);
  assert.is(put.json.error.code, 'invalid_policy');
  const cli = await compilePolicy('card.policy.json', bad);
  if (cli.ok) throw new Error('the bad policy compiled');
  const errors = cli.diagnostics.filter((d) => d.severity === 'error');
  assert.ok(errors.length > 0);
  assert.is(put.json.error.message, errors.map(formatDiagnostic).join('\n'));
  const first = put.json.error.diagnostics.find((d: any) => d.severity === 'error');
  assert.equal({ line: first.line, col: first.col, pointer: first.pointer, file: first.file }, { ...errors[0]!.span });
  assert.ok(first.line > 1 && first.pointer.startsWith('/rules/0'), JSON.stringify(first));
  const notJson = await plane.api('PUT', '/v1/policies/card', { body: '{ "palisade": 1,\n  "name": }' });
  assert.is(notJson.status, 400);
  assert.equal([notJson.json.error.diagnostics[0].line, notJson.json.error.code], [2, 'invalid_policy']);
  const versions = await plane.api('GET', '/v1/policies/card/versions');
  assert.is(versions.json.versions.length, 1, 'nothing recorded');
});

api('a policy submitted under another name, or for a service another policy protects, is refused', async () => {
  assert.is((await plane.api('PUT', '/v1/policies/other', { body: card })).json.error.code, 'name_mismatch');
  const taken = await plane.api('PUT', '/v1/policies/card2', { body: policy('card2', CARD, ['/x']) });
  assert.equal([taken.status, taken.json.error.code], [409, 'level_taken']);
  assert.is((await plane.api('PUT', '/v1/policies/Bad%20Name', { body: card })).json.error.code, 'bad_name');
});

api('mode changes and rollbacks are new versions; rollback restores the earlier sha256', async () => {
  const v1 = (await plane.api('GET', '/v1/policies/card')).json;
  const dry = await plane.api('POST', '/v1/policies/card/mode', { body: '{"mode":"dry-run"}' });
  assert.is(dry.status, 200, JSON.stringify(dry.json));
  assert.equal([dry.json.version, dry.json.change, dry.json.mode], [2, 'mode', 'dry-run']);
  assert.is.not(dry.json.sha256, v1.sha256);
  assert.is((await plane.api('POST', '/v1/policies/card/mode', { body: '{"mode":"sideways"}' })).status, 400);
  const back = await plane.api('POST', '/v1/policies/card/rollback');
  assert.equal([back.json.version, back.json.change, back.json.mode, back.json.sha256], [3, 'rollback', 'enforce', v1.sha256]);
  const to2 = await plane.api('POST', '/v1/policies/card/rollback', { body: '{"version":2}' });
  assert.equal([to2.json.version, to2.json.sha256], [4, dry.json.sha256]);
  assert.is((await plane.api('POST', '/v1/policies/card/rollback', { body: '{"version":4}' })).status, 400);
  const history = (await plane.api('GET', '/v1/policies/card/versions')).json.versions;
  assert.equal(history.map((v: any) => [v.version, v.change, v.changed_by.name]), [[1, 'submit', 'alice'], [2, 'mode', 'alice'], [3, 'rollback', 'alice'], [4, 'rollback', 'alice']]);
});

api('no token and a wrong token are 401; a viewer cannot change anything (403)', async () => {
  const [, id] = /^pct_([0-9a-f]{16})_/.exec(plane.admin)!;
  const forged = `pct_${id}_${'A'.repeat(43)}`;
  for (const token of [null, 'nonsense', forged, `${plane.admin}x`]) {
    const r = await plane.api('GET', '/v1/policies', { token });
    assert.is(r.status, 401, String(token));
    assert.is(r.json.error.code, 'unauthorized');
    const put = await plane.api('PUT', '/v1/policies/ledger', { token, body: policy('ledger', LEDGER, ['/b']) });
    assert.is(put.status, 401);
  }
  const before = (await plane.api('GET', '/v1/policies/card/versions')).json.versions.length;
  for (const [method, path, body] of [
    ['PUT', '/v1/policies/ledger', policy('ledger', LEDGER, ['/b'])],
    ['PUT', '/v1/policies/card', card],
    ['POST', '/v1/policies/card/mode', '{"mode":"dry-run"}'],
    ['POST', '/v1/policies/card/rollback', '{}'],
  ]) {
    const r = await plane.api(method!, path!, { token: plane.viewer, body });
    assert.equal([r.status, r.json.error.code], [403, 'forbidden'], `${method} ${path}`);
  }
  assert.is((await plane.api('GET', '/v1/policies/card/versions')).json.versions.length, before);
  assert.is((await plane.api('GET', '/v1/policies/ledger', { token: plane.viewer })).status, 404);
});

api('a Host this server does not answer to, or any Origin header, is refused before the token is looked at', async () => {
  for (const headers of [{ host: 'evil.example' }, { host: 'evil.example:443' }, { origin: 'https://evil.example' }, { origin: 'null' }] as Record<string, string>[]) {
    const r = await plane.api('GET', '/v1/policies', { headers });
    assert.is(r.status, 403, JSON.stringify(headers));
    assert.ok(['bad_host', 'bad_origin'].includes(r.json.error.code));
    const put = await plane.api('PUT', '/v1/policies/ledger', { headers, body: policy('ledger', LEDGER, ['/b']) });
    assert.is(put.status, 403);
  }
  assert.is((await plane.api('GET', '/v1/policies/ledger')).status, 404);
});

api.run();
