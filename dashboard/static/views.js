// One function per view: (api, argument, onRefresh) → element. A view registers how to
// refresh itself in place (keeping its filters) when a live event says its data changed.
import { h, badge, short, time, table } from './dom.js';
import { drawGraph } from './graph.js';

const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== '')).toString();
const name = (id) => (id ? id.replace(/^spiffe:\/\/[^/]+\//, '') : '(no identity)');

async function services(api, _arg, onRefresh) {
  const root = h('div', {});
  const draw = async () => {
    const { total, services } = await api('/v1/dashboard/services');
    const rows = services.flatMap((s) => {
      const instances = s.instances.length ? s.instances : [null];
      return instances.map((i, n) => {
        const reported = i && s.rollout.find((r) => r.instance === i.instance);
        return h('tr', { 'data-service': s.spiffe_id },
          n === 0 ? h('td', { rowspan: instances.length }, h('strong', {}, name(s.spiffe_id)), h('div', { class: 'mono' }, s.spiffe_id)) : null,
          n === 0 ? h('td', { rowspan: instances.length, class: 'policy' }, s.policy
            ? [`${s.policy.name} v${s.policy.version} `, badge(s.policy.mode), h('div', { class: 'mono' }, short(s.policy.sha256)), h('div', { class: 'hint' }, `${s.policy.changed_by}, ${time(s.policy.changed_at)}`)]
            : badge('no policy: unprotected', 'warn')) : null,
          h('td', { class: 'mono' }, i ? i.instance.slice(0, 8) : '—'),
          h('td', { class: 'instance-version' }, i?.policy ? `v${i.policy.version} ${short(i.policy.sha256)}` : reported ? `v${reported.version}` : '—',
            i?.policy && i.policy.sha256 !== s.policy?.sha256 ? badge('behind', 'warn') : null),
          h('td', { class: 'mono' }, i ? i.svid.serial.slice(0, 16) : '—'),
          h('td', { class: 'svid-expiry' }, i ? time(i.svid.not_after) : '—', i?.warning ? h('div', {}, badge(i.warning, 'warn')) : null),
          h('td', {}, i ? badge(i.renewal.status, i.renewal.status === 'ok' ? 'ok' : 'fail') : '—'),
          h('td', {}, i ? time(i.last_seen) : reported ? time(reported.reported_at) : '—'));
      });
    });
    root.replaceChildren(h('div', {},
      h('h2', {}, `Services (${total})`),
      table(['service', 'policy', 'instance', 'runs', 'SVID serial', 'SVID expires', 'renewal', 'last report'], rows),
      total > services.length ? h('p', { class: 'hint' }, `first ${services.length} of ${total}`) : null));
  };
  await draw();
  onRefresh(draw);
  return root;
}

async function graph(api, _arg, onRefresh) {
  let windowSeconds = 300;
  const root = h('div', {});
  const picked = h('div', { id: 'edge-decisions' });
  const open = new Set();
  const select = h('select', { id: 'graph-window', onchange: () => { windowSeconds = Number(select.value); draw(); } },
    [[60, 'last minute'], [300, 'last 5 minutes'], [900, 'last 15 minutes'], [3600, 'last hour']].map(([v, t]) => h('option', { value: v, selected: v === windowSeconds }, t)));
  const showEdge = async (e) => {
    const { decisions } = await api(`/v1/dashboard/decisions?${q({ service: e.target, caller: e.caller, limit: 20 })}`);
    picked.replaceChildren(h('h3', {}, `${name(e.caller)} → ${name(e.target)}: recent decisions`), decisionTable(decisions, api, open));
  };
  const draw = async () => {
    const data = await api(`/v1/dashboard/graph?window=${windowSeconds}`);
    root.replaceChildren(h('h2', {}, 'Call graph'), h('div', { class: 'filters' }, select,
      h('span', { class: 'hint' }, `${data.edges.length} of ${data.total_edges} edges; ✓ allowed ✗ denied ~ would be denied (dry-run)`)),
      drawGraph(data, showEdge), picked);
  };
  await draw();
  onRefresh(draw);
  return root;
}

/** `open`: ids whose detail the user opened; kept by the view, so a live redraw does not close them. */
function decisionTable(decisions, api, open) {
  const rows = decisions.flatMap((d) => {
    const detail = h('tr', { hidden: true }, h('td', { colspan: 8 }));
    const toggle = async (show) => {
      detail.hidden = !show;
      if (!show) return void open.delete(d.id);
      open.add(d.id);
      detail.firstChild.replaceChildren(decisionDetail(await api(`/v1/dashboard/decisions/${d.id}`)));
    };
    if (open.has(d.id)) void toggle(true);
    const row = h('tr', { class: 'clickable', 'data-id': d.id, 'data-decision': d.decision, onclick: () => toggle(detail.hidden) },
    h('td', {}, time(new Date(d.at).toISOString())), h('td', {}, name(d.target)), h('td', {}, name(d.caller)), h('td', { class: 'user' }, d.user ?? '—'),
    h('td', { class: 'mono' }, `${d.method} ${d.path}`), h('td', {}, badge(d.decision), d.mode === 'dry-run' ? badge('dry-run') : null),
    h('td', { class: 'mono' }, d.rule ?? '—'), h('td', {}, d.status));
    return [row, detail];
  });
  return table(['time', 'service', 'caller', 'user', 'request', 'decision', 'rule', 'status'], rows);
}

function decisionDetail(d) {
  const item = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
  return h('dl', { class: 'detail decision-detail' },
    item('rule', h('code', { class: 'rule' }, d.rule ?? '(none: default)')),
    item('reason', h('code', { class: 'reason' }, d.reason)),
    item('decision', badge(d.decision), ` ${d.mode ?? ''} → status ${d.status}`),
    item('trace id', h('code', {}, d.trace_id)), item('request id', h('code', {}, d.request_id)),
    item('caller (verified SPIFFE ID)', h('code', {}, d.caller ?? '(no identity)')),
    item('user (identity context)', d.user ?? '—', d.client_id ? ` via client ${d.client_id}` : ''),
    item('fingerprint', badge(d.fingerprint, d.fingerprint === 'verified' ? 'ok' : d.fingerprint === 'refused' ? 'fail' : 'warn')),
    item('policy', d.policy ? `${d.policy.name} v${d.policy.version} (${short(d.policy.sha256)})` : '—'),
    item('audit inclusion', inclusionOf(d)),
    item('agent instance', h('code', {}, d.instance)));
}

/** The audit entry's inclusion, as the control plane checked it against the instance's verified checkpoint. */
function inclusionOf(d) {
  const i = d.audit_inclusion;
  if (!i) return 'no audit entry (the agent keeps no audit log)';
  if (i.status === 'included') return badge(`entry ${d.audit_index} included in checkpoint ${i.checkpoint_size}`, 'ok');
  if (i.status === 'refused') return badge(`entry ${d.audit_index}: proof refused (${i.reason})`, 'fail');
  return badge(`entry ${d.audit_index}: pending (no checkpoint covers it yet)`, 'warn');
}

async function decisions(api, _arg, onRefresh) {
  const fields = ['service', 'caller', 'user', 'decision', 'rule'];
  const inputs = Object.fromEntries(fields.map((f) => [f, h('input', { name: f, placeholder: f, size: 18 })]));
  const list = h('div', {});
  const open = new Set();
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); draw(); } }, Object.values(inputs), h('button', { type: 'submit' }, 'Filter'));
  const draw = async () => {
    const filter = Object.fromEntries(fields.map((f) => [f, inputs[f].value.trim()]));
    const page = await api(`/v1/dashboard/decisions?${q({ ...filter, limit: 100 })}`);
    list.replaceChildren(h('p', { class: 'hint' }, `${page.in_window} decisions in the window; newest ${page.decisions.length} shown`), decisionTable(page.decisions, api, open));
  };
  await draw();
  onRefresh(draw);
  return h('div', {}, h('h2', {}, 'Decisions'), form, list);
}

function rulesTable(source) {
  let doc;
  try { doc = JSON.parse(source); } catch { return h('pre', { class: 'source' }, source); }
  const rows = (doc.rules ?? []).map((r) => h('tr', {}, h('td', { class: 'mono' }, r.id), h('td', {}, badge(r.effect, r.effect)),
    h('td', { class: 'mono' }, (r.from ?? ['(anyone)']).join(', ')),
    h('td', { class: 'mono' }, (r.to ?? []).map((t) => `${(t.methods ?? ['*']).join('|')} ${(t.paths ?? ['*']).join(', ')}`).join('; ')),
    h('td', { class: 'mono' }, r.when ?? '')));
  return table(['rule', 'effect', 'from', 'to', 'when'], rows);
}

async function policies(api, selected, onRefresh) {
  const root = h('div', {});
  const draw = async () => {
    const { policies } = await api('/v1/policies');
    const nav = h('p', {}, policies.map((p) => h('a', { href: `#policies/${encodeURIComponent(p.name)}`}, `${p.name} v${p.version}`, ' ')));
    const pick = selected ?? policies[0]?.name;
    if (!pick) return root.replaceChildren(h('h2', {}, 'Policies'), h('p', {}, 'no policy yet'));
    const [{ versions }, current] = await Promise.all([api(`/v1/policies/${encodeURIComponent(pick)}/versions`), api(`/v1/policies/${encodeURIComponent(pick)}`)]);
    const diffOut = h('div', { id: 'diff' });
    const choose = (id, value) => h('select', { id }, versions.map((v) => h('option', { value: v.version, selected: v.version === value }, `v${v.version}`)));
    const from = choose('diff-from', Math.max(1, current.version - 1)), to = choose('diff-to', current.version);
    const showDiff = async () => {
      const d = await api(`/v1/dashboard/policies/${encodeURIComponent(pick)}/diff?from=${from.value}&to=${to.value}`);
      diffOut.replaceChildren(d.regions.length === 0 ? h('p', {}, `v${d.from} and v${d.to} decide every request alike`)
        : table(['callers', 'method', 'paths', 'condition', `v${d.from}`, `v${d.to}`, 'example'], d.regions.map((r) => h('tr', {},
          h('td', { class: 'mono' }, r.callers), h('td', {}, r.method), h('td', { class: 'mono' }, r.paths), h('td', { class: 'mono' }, r.condition),
          h('td', {}, badge(r.old.decision), ' ', r.old.rule ?? ''), h('td', {}, badge(r.new.decision), ' ', r.new.rule ?? ''),
          h('td', { class: 'mono' }, r.witness ? `${r.witness.method} ${r.witness.path}` : '(depends on conditions)')))));
    };
    root.replaceChildren(h('h2', {}, 'Policies'), nav,
      h('h3', {}, `${pick}: v${current.version} `, badge(current.mode)),
      h('p', { class: 'mono' }, current.level),
      table(['version', 'change', 'mode', 'sha256', 'by', 'when'], versions.slice().reverse().map((v) => h('tr', {},
        h('td', {}, `v${v.version}`), h('td', {}, v.change, v.cause ? ` (${v.cause})` : ''), h('td', {}, badge(v.mode)),
        h('td', { class: 'mono' }, short(v.sha256)), h('td', {}, v.changed_by.name), h('td', {}, time(v.changed_at))))),
      h('h3', {}, 'Rules'), rulesTable(current.source),
      h('h3', {}, 'Diff'), h('div', { class: 'filters' }, from, ' → ', to, h('button', { onclick: showDiff }, 'Compare')), diffOut);
  };
  await draw();
  onRefresh(draw);
  return root;
}

async function audit(api, _arg, onRefresh) {
  const root = h('div', {});
  const draw = async () => {
    const { services } = await api('/v1/dashboard/services');
    const rows = services.flatMap((s) => s.instances.map((i) => h('tr', { 'data-service': s.spiffe_id },
      h('td', {}, name(s.spiffe_id)), h('td', { class: 'mono' }, i.instance.slice(0, 8)),
      h('td', {}, i.audit.size ?? '—'), h('td', {}, time(i.audit.signed_at)), h('td', { class: 'mono' }, i.audit.root ? `${i.audit.root.slice(0, 16)}…` : '—'),
      h('td', {}, badge(i.audit.result, i.audit.result === 'verified' ? 'ok' : i.audit.result === 'failed' ? 'fail' : 'warn'), i.audit.reason ? ` ${i.audit.reason}` : ''),
      h('td', {}, time(i.audit.checked_at)))));
    root.replaceChildren(h('h2', {}, 'Audit logs'),
      h('p', { class: 'hint' }, 'Latest signed checkpoint per agent, verified by the control plane as it arrives (signature, signer, chain, growth). Entries: palisade audit verify.'),
      table(['service', 'instance', 'entries', 'signed', 'root', 'verification', 'checked'], rows));
  };
  await draw();
  onRefresh(draw);
  return root;
}

export const views = { services, graph, decisions, policies, audit };
