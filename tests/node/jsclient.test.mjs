// The browser client (proto/js/statewire.js) run in node against the real
// binary on a real redis-server: WebSocket (the `ws` package as
// window.WebSocket) and SSE (node's fetch), a sessionStorage shim.
// Connect + hydrate, events, a dropped connection that resumes, events
// queued while disconnected applied exactly once, an event lost in flight
// rejected with connection_lost, and the fallback to SSE.
//   STATEWIRE_BIN=build/statewire node --test tests/node/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import WS from 'ws';
import { sleep, freePort } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { Statewire } = await import(join(here, '../../proto/js/statewire.js'));

const BIN = process.env.STATEWIRE_BIN;
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const procs = [];
let dir, port, origin;


// Every WebSocket the client opens, so a test can cut one.
const sockets = [];
class TrackedWS extends WS {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}
globalThis.WebSocket = TrackedWS;

// Every SSE stream the client opens, so a test can cut one.
const streams = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (url, opts = {}) => {
  if (String(url).includes('/_sse')) {
    const ac = new AbortController();
    opts.signal?.addEventListener('abort', () => ac.abort());
    streams.push(ac);
    return realFetch(url, { ...opts, signal: ac.signal });
  }
  return realFetch(url, opts);
};

function storage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
    map: m,
  };
}

async function until(pred, what, ms = 8000) {
  for (const t0 = Date.now(); Date.now() - t0 < ms;) {
    if (pred()) return;
    await sleep(10);
  }
  assert.fail(`timeout waiting for ${what}`);
}

function client(route, extra = {}) {
  const statuses = [];
  const sw = new Statewire({ url: origin, route, storage: storage(), backoff: { min: 50, max: 400, jitter: 0.3 }, ...extra });
  sw.onStatus((s) => statuses.push(s));
  sw.statuses = statuses;
  return sw;
}

before(async () => {
  assert.ok(BIN, 'STATEWIRE_BIN must name the statewire binary');
  dir = mkdtempSync(join(tmpdir(), 'sw-js-'));
  const sock = join(dir, 'redis.sock');
  procs.push(spawn(REDIS, ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) {
    try {
      await new Promise((ok, ko) => { const c = net.connect(sock, () => { c.end(); ok(); }); c.on('error', ko); });
      break;
    } catch { await sleep(100); }
  }
  port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  procs.push(spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--workers', '2',
    '--redis', `unix://${sock}`, '--log-level', process.env.DEBUG ? 'debug' : 'warn'],
  { stdio: process.env.DEBUG ? 'inherit' : 'ignore' }));
  for (let i = 0; i < 200; i++) {
    try { if ((await realFetch(`${origin}/healthz`)).status === 200) return; } catch {}
    await sleep(50);
  }
  throw new Error('statewire not healthy');
});

after(async () => {
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await sleep(300);
  rmSync(dir, { recursive: true, force: true });
});

test('the module is served at /statewire.js and the page at /room/<id>', async () => {
  const js = await realFetch(`${origin}/statewire.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.match(await js.text(), /export class Statewire/);
  const page = await (await realFetch(`${origin}/room/x`)).text();
  for (const id of ['status', 'room', 'count', 'inc', 'dec', 'viewers', 'linked', 'toggle-link',
    'delayed', 'name', 'set-name', 'chat-text', 'send', 'messages', 'toasts'])
    assert.ok(page.includes(`id="${id}"`), `#${id} in the page`);
});

for (const transport of ['ws', 'sse']) {
  test(`${transport}: hydrate, events, resume after a cut, queued events applied once`, async () => {
    const room = `/room/js-${transport}`;
    const a = client(room, { transport });
    const deltas = [];
    a.subscribe((state, msg) => deltas.push(msg));
    a.connect();
    await until(() => a.status === 'connected', 'connected');
    assert.deepEqual(a.statuses.slice(0, 2), ['connecting', 'connected']);
    assert.equal(a.state.room.room_id, `js-${transport}`);
    assert.ok(deltas[0].full, 'the hydrate answer replaces the store');
    const token = a.token;
    assert.equal(a._storage.getItem('statewire.token'), token);

    for (let i = 0; i < 3; i++) {
      const answer = await a.emit('counter.increment', {});
      assert.equal(answer.type, 'delta');
    }
    assert.equal(a.state.counter.count, 3);
    await a.emit('room.set_name', { value: 'ada' });
    assert.equal(a.state.room.name, 'ada');
    const stored = JSON.parse(a._storage.getItem('statewire.resume'));
    assert.ok(stored.conn_id && stored.conn_token);
    assert.equal(stored.last_seq, a.lastSeq);
    assert.ok(a.lastSeq > 0);

    await assert.rejects(a.emit('counter.explode', {}), (e) => e.code === 'unknown_event');
    await assert.rejects(a.emit('counter.add', { amount: 'x' }), (e) => e.code === 'bad_payload' && /integer/.test(e.message));

    // A second client in the room changes the counter while a is away.
    const b = client(room, { transport: 'ws' });
    b.connect();
    await until(() => b.status === 'connected', 'b connected');

    // Cut a's connection abruptly, then emit while it is down: queued.
    // (a cut WebSocket is known at once; a cut stream once its read fails)
    if (transport === 'ws') sockets.at(-2).terminate(); else streams.at(-1).abort();
    if (transport === 'sse') await until(() => a.status !== 'connected', 'a notices the cut');
    const queued = [a.emit('counter.increment', {}), a.emit('counter.increment', {})];
    queued.forEach((p) => p.catch(() => {}));
    await until(() => a.status !== 'connected', 'a notices the cut');
    await b.emit('counter.add', { amount: 10 });
    const answers = await Promise.all(queued);
    assert.equal(a.status, 'connected');
    assert.ok(a.statuses.includes('reconnecting'));
    assert.equal(a.resumed, true, 'the reconnect resumed');
    assert.equal(a.token, token, 'same token after the resume');
    assert.ok(answers.every((m) => m.type === 'delta'));
    await until(() => b.state.counter.count === 15, 'b sees 15');
    await sleep(200);
    assert.equal(a.state.counter.count, 15, 'the queued events applied exactly once');
    assert.equal(a.state.room.name, 'ada', 'private state kept');

    // An event written and unanswered when the connection drops is not resent.
    const lost = a.emit('counter.increment', {});
    lost.catch(() => {});
    if (transport === 'ws') sockets.at(-1).terminate(); else streams.at(-1).abort();
    const r = await lost.then(() => 'applied', (e) => e.code);
    assert.ok(r === 'connection_lost' || r === 'applied', r);
    await until(() => a.status === 'connected', 'a back');
    const after = (await b.emit('counter.add', { amount: 0 })).delta;
    await sleep(200);
    const n = b.state.counter.count;
    assert.ok(n === 15 || n === 16, `count ${n}`);
    await until(() => a.state.counter.count === n, 'a converges');
    void after;
    a.close();
    b.close();
    assert.equal(a.status, 'offline');
  });
}

test('auto: two failed WebSocket connects fall back to SSE', async () => {
  class DeadWS {
    constructor() {
      this.readyState = 0;
      setTimeout(() => { this.readyState = 3; this.onerror?.({}); this.onclose?.({ code: 1006 }); }, 5);
    }
    send() { throw new Error('not open'); }
    close() {}
  }
  const a = client('/room/js-auto', { transport: 'auto', WebSocket: DeadWS });
  const queued = a.emit('counter.increment', {});
  a.connect();
  const answer = await queued;
  assert.equal(answer.delta.counter.count, 1);
  assert.equal(a.transportInUse, 'sse');
  assert.equal(a.status, 'connected');
  a.close();
});

test('a duplicate tab (same stored token, no credentials) gets a token of its own', async () => {
  const a = client('/room/js-dup', { transport: 'ws' });
  a.connect();
  await until(() => a.status === 'connected', 'a connected');
  const s = storage();
  s.setItem('statewire.token', a.token);
  const b = client('/room/js-dup', { transport: 'ws', storage: s });
  b.connect();
  await until(() => b.status === 'connected', 'b connected');
  assert.notEqual(b.token, a.token);
  assert.equal(s.getItem('statewire.token'), b.token);
  await until(() => b.state.counter.viewers === 2 && a.state.counter.viewers === 2, `two viewers (${a.state.counter.viewers}, ${b.state.counter.viewers})`);
  a.close();
  b.close();
});
