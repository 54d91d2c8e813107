// Protocol tests with third-party clients: `ws` (WebSocket) and
// `eventsource` (the EventSource of browsers, with its automatic reconnect
// and Last-Event-ID). Two statewire instances ("two hosts", 2 workers each)
// on one real redis-server, all on loopback.
//   STATEWIRE_BIN=build/statewire node --test tests/node/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createRequire } from 'node:module';
import WebSocket from 'ws';
import { sleep, freePort, waitHealthy } from './harness.mjs';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');

const BIN = process.env.STATEWIRE_BIN;
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const procs = [];
let dir, sock;
const hosts = [];


before(async () => {
  assert.ok(BIN, 'STATEWIRE_BIN must name the statewire binary');
  dir = mkdtempSync(join(tmpdir(), 'sw-node-'));
  sock = join(dir, 'redis.sock');
  procs.push(spawn(REDIS, ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) { try { await new Promise((ok, ko) => { const c = net.connect(sock, ok); c.on('error', ko); c.on('connect', () => c.end()); }); break; } catch { await sleep(100); } }
  for (let h = 0; h < 2; h++) {
    const port = await freePort();
    procs.push(spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--workers', '2',
      '--redis', `unix://${sock}`, '--log-level', process.env.DEBUG ? 'debug' : 'warn'], { stdio: process.env.DEBUG ? 'inherit' : 'ignore' }));
    await waitHealthy(port);
    hosts.push(port);
  }
});

after(async () => {
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await sleep(300);
  rmSync(dir, { recursive: true, force: true });
});

// A WebSocket client with a message queue.
function wsOpen(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/_event`);
    const queue = [];
    const waiters = [];
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      const i = waiters.findIndex((w) => w.pred(m));
      if (i >= 0) waiters.splice(i, 1)[0].resolve(m); else queue.push(m);
    });
    ws.next = (pred = () => true, ms = 5000) => {
      const i = queue.findIndex(pred);
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
      return new Promise((res, rej) => {
        const w = { pred, resolve: res };
        waiters.push(w);
        setTimeout(() => rej(new Error('timeout waiting for a message')), ms).unref();
      });
    };
    ws.sendJson = (m) => ws.send(JSON.stringify(m));
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

test('ws: hello, hydrate, events, and a resume on the other host after 5 room changes', async () => {
  const a = await wsOpen(hosts[0]);
  a.sendJson({ type: 'hello', token: 'node-a' });
  const welcome = await a.next((m) => m.type === 'welcome');
  assert.equal(welcome.token, 'node-a');
  a.sendJson({ type: 'event', id: 1, name: 'hydrate', router: { path: '/room/node' } });
  const full = await a.next((m) => m.id === 1);
  assert.equal(full.full, true);
  a.sendJson({ type: 'event', id: 2, name: 'room.set_name', payload: { value: 'x' } });
  const d2 = await a.next((m) => m.id === 2);
  const lastSeq = d2.seq;
  a.terminate(); // abrupt disconnect

  const b = await wsOpen(hosts[1]);
  b.sendJson({ type: 'hello', token: 'node-b' });
  await b.next((m) => m.type === 'welcome');
  b.sendJson({ type: 'event', id: 1, name: 'hydrate', router: { path: '/room/node' } });
  await b.next((m) => m.id === 1);
  for (let i = 0; i < 5; i++) {
    b.sendJson({ type: 'event', id: 10 + i, name: 'counter.increment' });
    await b.next((m) => m.id === 10 + i);
  }

  const back = await wsOpen(hosts[1]);
  back.sendJson({ type: 'hello', token: 'node-a',
    resume: { conn_id: welcome.conn_id, conn_token: welcome.conn_token, last_seq: lastSeq } });
  const w2 = await back.next((m) => m.type === 'welcome');
  assert.equal(w2.resumed, true);
  const first = await back.next();
  assert.equal(first.type, 'delta', 'the resume sync comes before anything else');
  assert.equal(first.full, true);
  assert.equal(first.delta.counter.count, 5, 'the 5 changes made meanwhile');
  assert.equal(first.delta.room.name, 'x');

  const bad = await wsOpen(hosts[0]);
  bad.sendJson({ type: 'hello', token: 'node-a',
    resume: { conn_id: welcome.conn_id, conn_token: 'wrong', last_seq: 0 } });
  const wb = await bad.next((m) => m.type === 'welcome');
  assert.notEqual(wb.resumed, true);
  const err = await bad.next((m) => m.type === 'error');
  assert.equal(err.code, 'bad_resume');
  for (const s of [b, back, bad]) s.close();
});

test('eventsource: POSTs to either host apply in order; the automatic reconnect resumes', async () => {
  const url = `http://127.0.0.1:${hosts[0]}/_sse?token=node-sse`;
  const es = new EventSource(url);
  const seen = [];
  let welcome;
  const got = (pred, ms = 5000) => new Promise((res, rej) => {
    const t0 = Date.now();
    const tick = () => {
      const m = seen.find(pred);
      if (m) return res(m);
      if (Date.now() - t0 > ms) return rej(new Error('timeout'));
      setTimeout(tick, 20);
    };
    tick();
  });
  es.addEventListener('welcome', (e) => { welcome = JSON.parse(e.data); seen.push(welcome); });
  es.addEventListener('delta', (e) => seen.push({ ...JSON.parse(e.data), lastEventId: e.lastEventId }));
  await got((m) => m.type === 'welcome');
  const post = async (port, messages) => {
    const r = await fetch(`http://127.0.0.1:${port}/_event`, { method: 'POST',
      body: JSON.stringify({ conn_id: welcome.conn_id, conn_token: welcome.conn_token, messages }) });
    assert.equal(r.status, 202);
    return r.json();
  };
  await post(hosts[1], [{ type: 'event', id: 1, name: 'hydrate', router: { path: '/' } }]);
  for (let i = 0; i < 6; i++)
    assert.deepEqual(await post(hosts[i % 2], [{ type: 'event', id: 10 + i, name: 'counter.increment' }]), { accepted: 1 });
  const last = await got((m) => m.id === 15);
  assert.equal(last.delta.counter.count, 6, 'applied in posting order');
  assert.equal(last.lastEventId, String(last.seq), 'the event id is the seq');
  const answers = seen.filter((m) => m.id >= 10).map((m) => m.id);
  assert.deepEqual(answers, [10, 11, 12, 13, 14, 15]);

  // The server closes the stream (its host is stopped gracefully by a
  // reload); the EventSource reconnects by itself with Last-Event-ID.
  seen.length = 0;
  const wsBefore = welcome;
  process.kill(procs[1].pid, 'SIGHUP'); // host 0: a new generation, the old drains
  await got((m) => m.type === 'welcome' && m !== wsBefore, 15000);
  assert.equal(welcome.resumed, true, 'the automatic reconnect resumed');
  await post(hosts[0], [{ type: 'event', id: 20, name: 'counter.increment' }]);
  const after = await got((m) => m.id === 20);
  assert.equal(after.delta.counter.count, 7, 'nothing was lost');
  es.close();
});
