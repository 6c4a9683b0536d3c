/**
 * The policy filter keeps its decision record as filter state `wasm.palisade.decision`
 * (proxy_set_property), which Envoy's access logger sends to the agent's audit log: one
 * record per decision, the decision line's JSON exactly, also when the host logs less than
 * info and the line itself is not written. Real compiler, strict host.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFilter, type Filter, type FilterRequest } from '../../../host/filter.ts';
import { withFingerprint } from '../../../testing/fingerprint.ts';
import { DECISION_PREFIX, decisionOf } from '../../../testing/decision-line.ts';
import { compiledRules, SERVICE } from '../../compiler/backend/helpers.ts';

const CALLER = 'spiffe://corp.test/ns/web/sa/frontend';
let info: Filter;
let warn: Filter;

test.before(async () => {
  const { wasm } = await compiledRules([{ id: 'read', effect: 'allow', from: [CALLER], to: [{ methods: ['GET'], paths: ['/items/{id}'] }] }]);
  info = await loadFilter(wasm);
  warn = await loadFilter(wasm, { logLevel: 'warn' });
});
test.after(async () => {
  await info.close();
  await warn.close();
});

const request = (path: string, caller?: string): FilterRequest =>
  withFingerprint({ method: 'GET', path, authority: 'svc', ...(caller ? { source: { principal: caller } } : {}) }, SERVICE);
const state = (o: { filterState: ReadonlyMap<string, Uint8Array> }) => [...o.filterState].map(([k, v]) => [k, Buffer.from(v).toString('utf8')]);

for (const [what, req] of [
  ['allowed', request('/items/1', CALLER)],
  ['denied by default', request('/other', CALLER)],
  ['refused before any rule', request('/items/1')],
] as const) {
  test(`${what}: the filter state is the decision line's record`, async () => {
    const o = await info.handleRequest(req);
    const line = o.logs.find((l) => l.message.startsWith(DECISION_PREFIX))!.message;
    assert.equal(state(o), [['wasm.palisade.decision', line.slice(DECISION_PREFIX.length)]]);
    assert.ok(decisionOf(o));
  });
}

test('kept when the host drops info lines: the audit does not depend on the log level', async () => {
  const o = await warn.handleRequest(request('/items/1', CALLER));
  assert.equal(o.logs, []);
  assert.equal(state(o), [['wasm.palisade.decision', '{"decision":"allow","status":200,"rule":"read","mode":"enforce","reason":"allow_rule"}']]);
});

test.run();
