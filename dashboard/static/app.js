// The Security Pane's shell: the token (this tab's sessionStorage only, sent as a bearer
// header, never in a URL), the API, the live event stream and the views by URL fragment.
import { views } from './views.js';

const TOKEN_KEY = 'palisade.token';
const view = document.getElementById('view');
const login = document.getElementById('login');
let current = null;

export async function api(path) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` }, cache: 'no-store' });
  const body = await response.json();
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('That token was not accepted.');
    throw new Error('unauthorized');
  }
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body;
}

function showLogin(message = '') {
  login.hidden = false;
  document.getElementById('tabs').hidden = true;
  document.getElementById('login-error').textContent = message;
  view.replaceChildren();
}

login.addEventListener('submit', (event) => {
  event.preventDefault();
  const input = document.getElementById('token');
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  start();
});

async function render() {
  const [name, arg] = (location.hash.slice(1) || 'services').split('/');
  const draw = views[name] ?? views.services;
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.getAttribute('href') === `#${name}`);
  current = { name, arg, refresh: null };
  const mine = current;
  try {
    const node = await draw(api, arg ? decodeURIComponent(arg) : undefined, (refresh) => (mine.refresh = refresh));
    if (current === mine) view.replaceChildren(node);
  } catch (err) {
    if (err.message !== 'unauthorized') view.replaceChildren(Object.assign(document.createElement('p'), { className: 'error', textContent: err.message }));
  }
}

// Server-sent events read through fetch, so the token goes in a header (EventSource cannot send one).
async function listen() {
  const live = document.getElementById('live');
  live.hidden = false;
  for (;;) {
    try {
      const response = await fetch('/v1/dashboard/events', { headers: { authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      live.classList.remove('off');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          if (event) onEvent(event);
        }
      }
    } catch {
      // fall through: reconnect below
    }
    live.classList.add('off');
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(event) {
  const affected = { policy: ['services', 'policies'], decisions: ['services', 'graph', 'decisions', 'audit'] }[event] ?? [];
  if (current && affected.includes(current.name)) (current.refresh ?? render)();
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin();
  login.hidden = true;
  document.getElementById('tabs').hidden = false;
  await render();
  if (sessionStorage.getItem(TOKEN_KEY)) listen();
}

addEventListener('hashchange', render);
start();
