/**
 * Layered policies (compiler/compose/, `compileLayers`): a service's policy composed with the
 * trust-domain root and namespace layers above it, compiled to real wasm and run in the
 * strict host. The service owner plays the attacker: every way a lower layer could try to
 * lift a higher layer's deny is sent as a real request.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { checkLayers, compileLayers, compilePolicy, type Compiled, type LayerText } from '../../../compiler/index.ts';
import { formatDiagnostic } from '../../../compiler/frontend/ast.ts';
import { loadFilter, type FilterRequest } from '../../../host/filter.ts';
import { withFingerprint } from '../../../testing/fingerprint.ts';
import { positionOf } from '../frontend/helpers.ts';
import { compiledLayers } from '../../support/compiled.ts';

const CARDS = 'spiffe://bank.example/ns/payments/sa/cards';
const STOREFRONT = 'spiffe://bank.example/ns/web/sa/storefront';
const FRONTEND = 'spiffe://bank.example/ns/web/sa/frontend';
const PROBER = 'spiffe://bank.example/ns/ops/sa/prober';
const PROMETHEUS = 'spiffe://bank.example/ns/monitoring/sa/prometheus';
const ADMIN_TOOL = 'spiffe://bank.example/ns/payments/sa/admin-tool';
const PARTNER = 'spiffe://partner.example/sa/reconciler';

const layer = (file: string, top: Record<string, unknown>, rules: unknown[]): LayerText =>
  ({ file, text: JSON.stringify({ palisade: 1, ...top, rules }, null, 2) });

const ROOT = layer('bank.layer.json', { name: 'bank', scope: 'spiffe://bank.example/**' }, [
  { id: 'no-admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] },
  { id: 'health-check', effect: 'allow', appliesBelow: true, from: [PROBER], to: [{ methods: ['GET'], paths: ['/healthz'] }] },
]);
const PAYMENTS = layer('payments.layer.json', { name: 'payments', scope: 'spiffe://bank.example/ns/payments/**' }, [
  { id: 'no-debug', effect: 'deny', to: [{ paths: ['/debug/**'] }] },
  { id: 'metrics', effect: 'allow', appliesBelow: true, from: [PROMETHEUS], to: [{ methods: ['GET'], paths: ['/metrics'] }] },
  // A namespace is below the root too: its allow cannot lift the root's deny either.
  { id: 'admin-tool', effect: 'allow', appliesBelow: true, from: [ADMIN_TOOL], to: [{ paths: ['/admin/**'] }] },
]);
/** The service owner's policy: allows everything the layers above deny, every way it can. */
const CARDS_POLICY = layer('cards.policy.json', { name: 'cards', service: CARDS, federatesWith: ['partner.example'], mode: 'dry-run' }, [
  { id: 'everything', effect: 'allow', from: [FRONTEND, ADMIN_TOOL] },
  { id: 'admin-same-path', effect: 'allow', from: [FRONTEND], to: [{ paths: ['/admin/**', '/debug/**'] }] },
  { id: 'admin-narrower', effect: 'allow', from: [FRONTEND], to: [{ methods: ['GET'], paths: ['/admin/users'] }], inject: { 'x-admin': "'yes'" } },
  { id: 'admin-always', effect: 'allow', from: [FRONTEND], to: [{ paths: ['/admin/{page}'] }], when: "request.method == request.method || 'x-a' in request.headers" },
  { id: 'partner', effect: 'allow', from: ['spiffe://partner.example/**'] },
]);
const STOREFRONT_POLICY = layer('storefront.policy.json', { name: 'storefront', service: STOREFRONT }, [
  { id: 'frontend', effect: 'allow', from: [FRONTEND] },
]);


interface Decision { status: number; rule: string | null; reason: string; mode: string; upstream: string[] }

/** Sends each request (caller, method, path) through the filter, with the fingerprint jwt_authn would have verified. */
async function decide(wasm: Uint8Array, service: string, requests: [string, string, string][]): Promise<Decision[]> {
  const filter = await loadFilter(wasm);
  try {
    const out: Decision[] = [];
    for (const [principal, method, path] of requests) {
      const request: FilterRequest = { method, path, authority: 'cards.bank.example', source: { principal } };
      const o = await filter.handleRequest(withFingerprint(request, service));
      const line = o.logs.find((l) => l.message.startsWith('palisade.decision '))!;
      const record = JSON.parse(line.message.slice('palisade.decision '.length));
      out.push({ status: o.status, rule: record.rule, reason: record.reason, mode: record.mode, upstream: (o.upstreamRequest?.headers ?? []).map(([k]) => k) });
    }
    return out;
  } finally {
    await filter.close();
  }
}

let cards: Compiled;
test.before(async () => {
  cards = await compiledLayers([ROOT, PAYMENTS, CARDS_POLICY]);
});

test('a root-level deny applies to a service whose own policy allows the request', async () => {
  const alone = await compilePolicy(CARDS_POLICY.file, CARDS_POLICY.text);
  assert.ok(alone.ok);
  const request: [string, string, string] = [FRONTEND, 'GET', '/admin/users'];
  const [own] = await decide(alone.wasm, CARDS, [request]);
  assert.is(own.status, 200, "the service's own policy allows it (dry-run forwards)");
  assert.is(own.rule, 'everything');
  const [composed, other] = await decide(cards.wasm, CARDS, [request, [FRONTEND, 'GET', '/cards/1']]);
  assert.equal(composed, { status: 403, rule: 'bank/no-admin', reason: 'deny_rule', mode: 'enforce', upstream: [] });
  assert.equal([other.status, other.rule], [200, 'everything']);
});

test('a lower layer cannot lift a higher deny: same path, narrower path, an always-true when, an injection, federation, a namespace allow, dry-run', async () => {
  const decisions = await decide(cards.wasm, CARDS, [
    [FRONTEND, 'GET', '/admin/users'], // same path (admin-same-path), narrower (admin-narrower, with inject), always true (admin-always)
    [FRONTEND, 'POST', '/admin/settings'],
    [FRONTEND, 'GET', '/admin/users/../users'],
    [PARTNER, 'GET', '/admin/users'], // a federated caller: the root deny has no `from`, and still covers it
    [ADMIN_TOOL, 'DELETE', '/admin/users'], // the namespace's own appliesBelow allow
    [FRONTEND, 'GET', '/debug/pprof'], // the namespace's deny, under the service's allows
  ]);
  for (const d of decisions.slice(0, 5)) assert.equal([d.status, d.rule, d.mode], [403, 'bank/no-admin', 'enforce']);
  assert.equal([decisions[5].status, decisions[5].rule], [403, 'payments/no-debug']);
  const [partner] = await decide(cards.wasm, CARDS, [[PARTNER, 'GET', '/cards/1']]);
  assert.equal([partner.status, partner.rule], [200, 'partner'], 'the federated caller is accepted where nothing above denies');
  // The service's dry-run could only have forwarded the denied requests: the layers above enforce.
  const warning = cards.warnings.find((w) => w.span.pointer === '/mode');
  assert.ok(warning, cards.warnings.map(formatDiagnostic).join('\n'));
  assert.is(warning.span.file, 'cards.policy.json');
  assert.match(warning.message, /mode 'dry-run' does not apply: bank\.layer\.json:\d+:\d+ enforces/);
  assert.is(cards.manifest.mode, 'enforce');
});

test('an appliesBelow allow applies to every service under its scope, and not in another namespace', async () => {
  const inPayments = await decide(cards.wasm, CARDS, [[PROMETHEUS, 'GET', '/metrics'], [PROBER, 'GET', '/healthz'], [PROBER, 'GET', '/metrics']]);
  assert.equal(inPayments.map((d) => [d.status, d.rule]), [[200, 'payments/metrics'], [200, 'bank/health-check'], [403, null]]);
  const storefront = await compiledLayers([ROOT, STOREFRONT_POLICY]);
  const inWeb = await decide(storefront.wasm, STOREFRONT, [[PROMETHEUS, 'GET', '/metrics'], [PROBER, 'GET', '/healthz'], [FRONTEND, 'GET', '/admin/x']]);
  assert.equal(inWeb.map((d) => [d.status, d.rule]), [[403, null], [200, 'bank/health-check'], [403, 'bank/no-admin']]);
  assert.equal(await diagnostics([ROOT, PAYMENTS, STOREFRONT_POLICY]), [
    `payments.layer.json:${at(PAYMENTS, '"spiffe://bank.example/ns/payments/**"')}: error: scope 'spiffe://bank.example/ns/payments/**' does not contain the service '${STOREFRONT}' (storefront.policy.json:${at(STOREFRONT_POLICY, `"${STOREFRONT}"`)}) (at /scope)`,
  ]);
});

/** The diagnostics of layers that do not compile, formatted (none when they compile). */
async function diagnostics(layers: LayerText[]): Promise<string[]> {
  const r = await compileLayers(layers);
  return r.ok ? [] : r.diagnostics.map(formatDiagnostic);
}

/** `line:col` of `needle` in a layer's text. */
function at(l: LayerText, needle: string): string {
  const p = positionOf(l.text, needle);
  return `${p.line}:${p.col}`;
}

test('diagnostics of each layer point into its own file', async () => {
  const root = layer('root.json', { name: 'bank', scope: 'spiffe://bank.example/**' }, [{ id: 'a', effect: 'deny', when: 'request.methd == "GET"' }]);
  const ns = layer('ns.json', { name: 'payments', scope: 'spiffe://bank.example/ns/payments/**' }, [{ id: 'b', effect: 'deny', to: [{ methods: ['get'] }] }]);
  const svc = layer('svc.json', { name: 'cards', service: CARDS }, [{ id: 'c', effect: 'allow', to: [{ paths: ['/x/{id}/{id}'] }] }]);
  const lines = await diagnostics([svc, root, ns]);
  assert.is(lines.length, 3, lines.join('\n'));
  const col = (l: LayerText, needle: string, shift: number) => { const p = positionOf(l.text, needle, shift); return `${p.line}:${p.col}`; };
  assert.ok(lines.some((l) => l.startsWith(`root.json:${col(root, 'request.methd', 'request.'.length)}: error: unknown attribute 'request.methd'`)), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith(`ns.json:${at(ns, '"get"')}: error: invalid method "get"`)), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith(`svc.json:${col(svc, '/{id}"', 1)}: error: invalid path template '/x/{id}/{id}': duplicate parameter`)), lines.join('\n'));
  // The optimizer's warnings too: an own allow the root's deny shadows is reported where it is written.
  const shadowed = layer('svc.json', { name: 'cards', service: CARDS }, [{ id: 'admin', effect: 'allow', to: [{ paths: ['/admin/**'] }] }]);
  const ok = await compileLayers([ROOT, shadowed]);
  assert.ok(ok.ok);
  assert.equal(ok.warnings.map(formatDiagnostic), [
    `svc.json:${at(shadowed, '{\n      "id": "admin"')}: warning: rule 'admin' can never apply: shadowed by deny rule 'bank/no-admin' (bank.layer.json rules[0]), which matches every request it matches (at /rules/0)`,
  ]);
});

test('what composes and what does not: levels, scopes, names, appliesBelow', async () => {
  const errors = async (layers: LayerText[]) => (await diagnostics(layers)).filter((d) => d.includes(': error: '));
  const second = layer('again.layer.json', { name: 'bank-two', scope: 'spiffe://bank.example/**' }, []);
  assert.equal(await errors([ROOT, second, CARDS_POLICY]), [
    `again.layer.json:${at(second, '"spiffe://bank.example/**"')}: error: two layers at the same level for one service: 'spiffe://bank.example/**' is also the scope of bank.layer.json:${at(ROOT, '"spiffe://bank.example/**"')} (at /scope)`,
  ]);
  assert.equal(await errors([CARDS_POLICY, STOREFRONT_POLICY]), [
    `storefront.policy.json:${at(STOREFRONT_POLICY, `"${STOREFRONT}"`)}: error: a second service policy (the first is cards.policy.json:${at(CARDS_POLICY, `"${CARDS}"`)}): compose the layers of one service at a time (at /service)`,
  ]);
  assert.match((await errors([ROOT, PAYMENTS]))[0], /^bank\.layer\.json:\d+:\d+: error: no service policy among the layers/);
  assert.match((await errors([]))[0], /no service policy among the layers/);
  const sameName = layer('ns.layer.json', { name: 'bank', scope: 'spiffe://bank.example/ns/payments/**' }, []);
  assert.match((await errors([ROOT, sameName, CARDS_POLICY]))[0], /^ns\.layer\.json:\d+:\d+: error: layer name 'bank' is also the name of bank\.layer\.json:\d+:\d+/);
  const otherDomain = layer('other.layer.json', { name: 'other', scope: 'spiffe://other.example/**' }, []);
  assert.match((await errors([otherDomain, CARDS_POLICY])).join('\n'), /^other\.layer\.json:4:12: error: scope 'spiffe:\/\/other\.example\/\*\*' does not contain the service/);
  // A prefix is whole segments: ns/pay is not above ns/payments.
  const partial = layer('pay.layer.json', { name: 'pay', scope: 'spiffe://bank.example/ns/pay/**' }, []);
  assert.match((await errors([partial, CARDS_POLICY]))[0], /does not contain the service/);

  const checks: [Record<string, unknown>, unknown[], RegExp][] = [
    [{ scope: 'spiffe://bank.example/**' }, [{ id: 'open', effect: 'allow' }], /^x\.json:\d+:\d+: error: an allow rule of a scope layer must say "appliesBelow": true.* \(at \/rules\/0\)$/],
    [{ scope: 'spiffe://bank.example/**' }, [{ id: 'open', effect: 'allow', appliesBelow: false }], /must say "appliesBelow": true.* \(at \/rules\/0\/appliesBelow\)$/],
    [{ scope: 'spiffe://bank.example/**' }, [{ id: 'd', effect: 'deny', appliesBelow: false }], /'appliesBelow' is for allow rules: a scope layer's deny rules always apply/],
    [{ service: CARDS }, [{ id: 'a', effect: 'allow', appliesBelow: true }], /'appliesBelow' is for the allow rules of a scope layer: a service's own policy has nothing below it/],
    [{ scope: 'spiffe://bank.example' }, [], /invalid scope 'spiffe:\/\/bank\.example': .*'spiffe:\/\/bank\.example\/\*\*'/],
    [{ scope: 'spiffe://bank.example/ns/payments' }, [], /invalid scope .* a scope is a SPIFFE ID prefix of whole segments followed by '\/\*\*'/],
    [{ scope: 'spiffe://bank.example/ns/*/**' }, [], /invalid scope/],
    [{ scope: 'spiffe://bank.example/**', service: CARDS }, [], /either 'service' \(its own service\) or 'scope'/],
    [{ scope: 'spiffe://bank.example/**', federatesWith: ['partner.example'] }, [], /'federatesWith' belongs in a service's own policy/],
  ];
  for (const [top, rules, expected] of checks) {
    const lines = await errors([layer('x.json', { name: 'x', ...top }, rules), ...('service' in top ? [] : [CARDS_POLICY])]);
    assert.ok(lines.some((l) => expected.test(l)), `${JSON.stringify(top)} ${JSON.stringify(rules)}:\n${lines.join('\n')}`);
  }
  // One id in several layers: each higher layer's is qualified by its name, so all stay apart.
  const clash = checkLayers([
    layer('r.json', { name: 'bank', scope: 'spiffe://bank.example/**' }, [{ id: 'admin', effect: 'deny', to: [{ paths: ['/admin/**'] }] }]),
    layer('n.json', { name: 'payments', scope: 'spiffe://bank.example/ns/payments/**' }, [{ id: 'admin', effect: 'deny', to: [{ paths: ['/admin'] }] }]),
    layer('s.json', { name: 'cards', service: CARDS }, [{ id: 'admin', effect: 'deny', to: [{ paths: ['/adm'] }] }]),
  ]);
  assert.ok(clash.ok);
  assert.equal(clash.policy.rules.map((r) => [r.id, r.span.file, r.index]), [['bank/admin', 'r.json', 0], ['payments/admin', 'n.json', 1], ['admin', 's.json', 2]]);
  // An invalid scope is one error, not one more per rule that only a scope layer may write.
  const badScope = layer('x.json', { name: 'x', scope: 'spiffe://bank.example/ns/*/**' }, [{ id: 'a', effect: 'allow', appliesBelow: true }]);
  assert.equal((await errors([badScope, CARDS_POLICY])).length, 1);
  // A scope layer alone is not a policy.
  const alone = await compilePolicy(ROOT.file, ROOT.text);
  assert.ok(!alone.ok && formatDiagnostic(alone.diagnostics[0]).startsWith(`bank.layer.json:${at(ROOT, '"spiffe://bank.example/**"')}: error: a scope layer is not a policy on its own`));
});

test('the manifest lists every layer and its sha256, root first; the order given does not change a byte', async () => {
  const sha = (l: LayerText) => createHash('sha256').update(l.text).digest('hex');
  assert.equal(cards.manifest.layers, [
    { file: 'bank.layer.json', sha256: sha(ROOT), level: 'spiffe://bank.example/**' },
    { file: 'payments.layer.json', sha256: sha(PAYMENTS), level: 'spiffe://bank.example/ns/payments/**' },
    { file: 'cards.policy.json', sha256: sha(CARDS_POLICY), level: CARDS },
  ]);
  assert.equal(cards.manifest.source, { file: 'cards.policy.json', sha256: sha(CARDS_POLICY) });
  const shuffled = await compiledLayers([CARDS_POLICY, PAYMENTS, ROOT]);
  assert.equal(shuffled.wasm, cards.wasm);
  assert.equal(shuffled.manifest, cards.manifest);
  // A service's policy without layers compiles to the filter it always did; only the manifest says "layers".
  const single = await compilePolicy(STOREFRONT_POLICY.file, STOREFRONT_POLICY.text);
  const asLayer = await compiledLayers([STOREFRONT_POLICY]);
  assert.ok(single.ok);
  assert.equal(asLayer.wasm, single.wasm);
  assert.is(single.manifest.layers, undefined);
});

test.run();
