// Elements are built, never parsed from strings: what agents and operators send (paths,
// reasons, policy text) is text on the page, never markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false).map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

export const badge = (text, kind = text) => h('span', { class: `badge ${kind}` }, text);
export const short = (sha) => (sha ? `${sha.slice(0, 12)}…` : '—');
export const time = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
export const table = (headers, rows) => h('table', {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))), h('tbody', {}, rows));
