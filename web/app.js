// The demo page: the rooms app through /statewire.js. Served at / and
// /room/<id>; the DOM ids are a contract with the browser tests.
import { Statewire } from '/statewire.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const sw = new Statewire({
  url: location.origin,
  transport: params.get('transport') || 'auto', // ?transport=sse to try SSE
  route: location.pathname,
});

function toast(text, kind) {
  const el = document.createElement('div');
  el.className = kind ? `toast ${kind}` : 'toast';
  el.textContent = text;
  $('toasts').append(el);
  setTimeout(() => el.remove(), 4000);
}

sw.onStatus((s) => {
  const el = $('status');
  el.textContent = s;
  el.className = s;
});

function render(state) {
  const room = state.room || {};
  const counter = state.counter || {};
  const chat = state.chat || {};
  $('room').textContent = room.room_id ?? '';
  $('count').textContent = String(counter.count ?? 0);
  $('viewers').textContent = String(counter.viewers ?? 0);
  $('linked').textContent = counter.linked ? 'linked' : 'private';
  const name = $('name');
  if (document.activeElement !== name && room.name !== undefined) name.value = room.name;
  const list = $('messages');
  const msgs = Array.isArray(chat.messages) ? chat.messages : [];
  const items = msgs.map((m) => {
    const li = document.createElement('li');
    li.textContent = `${m.name}: ${m.text}`;
    return li;
  });
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(...items);
  if (stick) list.scrollTop = list.scrollHeight;
}

sw.subscribe(render);
sw.onAction('_toast', (p) => toast(p && p.text !== undefined ? String(p.text) : JSON.stringify(p)));
sw.onError((e) => console.warn('statewire:', e.code, e.message));

// Clicks while disconnected are queued by the client and sent once after
// the reconnect; an event lost with its connection is reported, not resent.
function send(name, payload) {
  sw.emit(name, payload).catch((e) => {
    toast(e.code === 'connection_lost' ? `${name}: connection lost, it may not have been applied` : `${name}: ${e.message}`, 'error');
  });
}

$('inc').addEventListener('click', () => send('counter.increment', {}));
$('dec').addEventListener('click', () => send('counter.decrement', {}));
$('toggle-link').addEventListener('click', () => send('counter.toggle_link', {}));
$('delayed').addEventListener('click', () => send('counter.delayed_increment', { amount: 3, interval_ms: 500 }));
$('set-name').addEventListener('click', () => send('room.set_name', { value: $('name').value }));
$('name').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('set-name').click(); });
$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('chat-text');
  const text = input.value.trim();
  if (!text) return;
  input.value = '';
  send('chat.send', { text });
});

sw.connect();
window.statewire = sw; // for the console and the browser tests
