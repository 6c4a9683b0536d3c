/**
 * Identities are checked, not assumed: a compiled policy filter in the strict host, given the
 * peer URI SAN Envoy would hand it (Envoy only guarantees the chain verified), refuses a
 * caller whose ID is not a workload SPIFFE ID, or whose trust domain the policy does not
 * accept, with 401 before any rule, even one without `from`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileChecked } from '../../../compiler/index.ts';
import { loadFilter, type Filter } from '../../../host/filter.ts';
import { withFingerprint } from '../../../testing/fingerprint.ts';
import { checked, SERVICE } from './helpers.ts';

const POLICY = checked([
  { id: 'open', effect: 'allow', to: [{ paths: ['/open'] }] },
  { id: 'partner', effect: 'allow', from: ['spiffe://partner.test/ns/**'], to: [{ paths: ['/partner'] }] },
  { id: 'web', effect: 'allow', from: ['spiffe://corp.test/ns/web/sa/frontend'], to: [{ paths: ['/web'] }] },
], { federatesWith: ['partner.test', 'quiet.test'] });

let filter: Filter;
test.before(async () => {
  filter = await loadFilter((await compileChecked(POLICY)).wasm);
});
test.after(async () => {
  await filter?.close();
});

/** The decision record and what reached the upstream, for `caller` on `path`; the fingerprint is the caller's own, so only the ID is on trial. */
async function call(caller: string, path: string) {
  const o = await filter.handleRequest(withFingerprint({ method: 'GET', path, authority: 'api', source: { principal: caller } }, SERVICE));
  const line = o.logs.find((l) => l.message.startsWith('palisade.decision '))!;
  return { ...JSON.parse(line.message.slice('palisade.decision '.length)), status: o.status, forwarded: o.upstreamRequest !== null };
}

test('a peer URI SAN that is not a workload SPIFFE ID is unauthenticated, even for a rule without `from`', async () => {
  const invalid = [
    'SPIFFE://corp.test/ns/web/sa/frontend', // the scheme is lowercase
    'spiffe:/corp.test/ns/web',
    'https://corp.test/ns/web/sa/frontend',
    'spiffe://Corp.test/ns/web/sa/frontend', // the trust domain is lowercase
    'spiffe://corp.test:8443/ns/web/sa/frontend', // port
    'spiffe://admin@corp.test/ns/web/sa/frontend', // user info
    'spiffe://corp.test/ns/web/sa/frontend?x=1',
    'spiffe://corp.test/ns/web/sa/frontend#x',
    'spiffe://corp.test/ns/web/sa/%66rontend', // percent-encoding
    'spiffe://corp.test/ns/../web/sa/frontend',
    'spiffe://corp.test/ns/./web/sa/frontend',
    'spiffe://corp.test/ns//web/sa/frontend',
    'spiffe://corp.test/ns/web/sa/frontend/', // trailing slash: an empty segment
    'spiffe://corp.test/ns/web/sa/front end',
    'spiffe://corp.test/ns/web/sa/frontend\0',
    'spiffe://corp.test/ns/web/sa/frontänd',
    'spiffe://corp.test', // a trust domain, not a workload
    'spiffe://corp.test/',
    'spiffe:///ns/web/sa/frontend', // no trust domain
    `spiffe://corp.test/${'a'.repeat(2048)}`, // longer than 2048 bytes
    `spiffe://${'a'.repeat(256)}/x`, // trust domain longer than 255
  ];
  for (const caller of invalid) {
    const d = await call(caller, '/open');
    assert.equal([d.status, d.decision, d.reason, d.rule, d.forwarded], [401, 'unauthenticated', 'invalid_principal', null, false], JSON.stringify(caller));
  }
  // A pattern is never matched by a look-alike: `..` does not resolve into the pattern's path.
  const d = await call('spiffe://corp.test/ns/ops/../web/sa/frontend', '/web');
  assert.equal([d.status, d.reason], [401, 'invalid_principal']);
});

test('a caller of a trust domain the policy does not accept is unauthenticated before any rule', async () => {
  for (const caller of ['spiffe://evil.test/ns/web/sa/frontend', 'spiffe://corp.test.evil/ns/web/sa/frontend', 'spiffe://corp/ns/web/sa/frontend']) {
    const d = await call(caller, '/open');
    assert.equal([d.status, d.decision, d.reason, d.rule, d.forwarded], [401, 'unauthenticated', 'foreign_trust_domain', null, false], caller);
  }
});

test('federated callers are accepted, but only rules whose `from` names them admit them', async () => {
  let d = await call('spiffe://partner.test/ns/api/sa/client', '/partner');
  assert.equal([d.status, d.rule, d.forwarded], [200, 'partner', true]);
  d = await call('spiffe://partner.test/ns/api/sa/client', '/open'); // no `from`: the service's own trust domain only
  assert.equal([d.status, d.decision, d.reason], [403, 'deny', 'no_allow_rule']);
  d = await call('spiffe://quiet.test/ns/api/sa/client', '/open'); // federated, named by no pattern: authenticated, no rule
  assert.equal([d.status, d.reason], [403, 'no_allow_rule']);
  d = await call('spiffe://corp.test/ns/batch/sa/job', '/open');
  assert.equal([d.status, d.rule], [200, 'open']);
  d = await call('spiffe://corp.test/ns/web/sa/frontend', '/web');
  assert.equal([d.status, d.rule], [200, 'web']);
});

test.run();
