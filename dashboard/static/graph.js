// The call graph as SVG: services on a circle, one line per observed (caller, service)
// pair with its allowed / denied / would-deny counts; edges with denials are drawn apart.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, ...children) => {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (k.startsWith('on')) el.addEventListener(k.slice(2), v); else el.setAttribute(k, String(v));
  el.append(...children);
  return el;
};
const label = (id) => id.replace(/^spiffe:\/\/[^/]+\//, '');

export function drawGraph({ nodes, edges }, onEdge) {
  const width = 1000, height = 520, r = Math.min(width, height) / 2 - 60;
  const at = new Map(nodes.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, nodes.length) - Math.PI / 2;
    return [n, { x: width / 2 + r * Math.cos(a), y: height / 2 + r * Math.sin(a) }];
  }));
  const root = svg('svg', { class: 'graph', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'call graph' });
  for (const e of edges) {
    const a = at.get(e.caller), b = at.get(e.target);
    const denied = e.denied + e.dry_run_denied > 0;
    const text = `✓${e.allowed} ✗${e.denied} ~${e.dry_run_denied}`;
    const g = svg('g', { class: `edge${denied ? ' denied' : ''}`, 'data-caller': e.caller, 'data-target': e.target, tabindex: 0, onclick: () => onEdge(e) },
      svg('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, 'marker-end': 'url(#arrow)' }),
      svg('text', { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, 'text-anchor': 'middle' }, text));
    g.append(svg('title', {}, `${label(e.caller)} → ${label(e.target)}: ${e.allowed} allowed, ${e.denied} denied, ${e.dry_run_denied} would be denied (dry-run)`));
    root.append(g);
  }
  for (const n of nodes) {
    const p = at.get(n);
    root.append(svg('g', { class: 'node' }, svg('circle', { cx: p.x, cy: p.y, r: 7 }), svg('text', { x: p.x + 10, y: p.y + 4 }, label(n))));
  }
  return h('div', {}, root);
}
