// The browser client's `auth` option (proto/js/statewire.js) run in node
// against the real binary with the trust test app (tests/apps/trust_app.c:
// auth "user:<name>" admits <name>, "deny" is refused): a string or a
// function goes into the hello (WebSocket) and the stream's `auth`
// parameter (SSE), a function is called again before every reconnect, and
// a refusal reaches onError as `unauthorized` on both transports.
//   STATEWIRE_BIN=build/statewire TRUST_APP=build/tests/trust_app.so node --test tests/node/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import WS from 'ws';
import { sleep, freePort, waitHealthy } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { Statewire } = await import(join(here, '../../proto/js/statewire.js'));

const BIN = process.env.STATEWIRE_BIN;
const APP = process.env.TRUST_APP;
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const procs = [];
let dir, origin;

// Every WebSocket the client opens, so a test can cut one.
const sockets = [];
class TrackedWS extends WS {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
}

function storage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
}

async function until(pred, what, ms = 8000) {
  for (const t0 = Date.now(); Date.now() - t0 < ms;) {
    if (pred()) return;
    await sleep(10);
  }
  assert.fail(`timeout waiting for ${what}`);
}

function client(transport, auth) {
  return new Statewire({ url: origin, route: '/', transport, auth, storage: storage(),
    WebSocket: TrackedWS, backoff: { min: 50, max: 400, jitter: 0.3 } });
}

before(async () => {
  assert.ok(BIN, 'STATEWIRE_BIN must name the statewire binary');
  assert.ok(APP, 'TRUST_APP must name tests/apps/trust_app.c built as a module');
  dir = mkdtempSync(join(tmpdir(), 'sw-jsauth-'));
  const sock = join(dir, 'redis.sock');
  procs.push(spawn(REDIS, ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) {
    try {
      await new Promise((ok, ko) => { const c = net.connect(sock, () => { c.end(); ok(); }); c.on('error', ko); });
      break;
    } catch { await sleep(100); }
  }
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  procs.push(spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--workers', '1',
    '--redis', `unix://${sock}`, '--app', APP, '--log-level', process.env.DEBUG ? 'debug' : 'warn'],
  { stdio: process.env.DEBUG ? 'inherit' : 'ignore' }));
  await waitHealthy(port);
});

after(async () => {
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await sleep(300);
  rmSync(dir, { recursive: true, force: true });
});

for (const transport of ['ws', 'sse']) {
  test(`${transport}: a string auth admits its user`, async () => {
    const a = client(transport, 'user:alice');
    a.connect();
    await until(() => a.status === 'connected', 'connected');
    const answer = await a.emit('me.whoami', {});
    assert.equal(answer.delta.me.user, 'alice');
    a.close();
  });

  test(`${transport}: an auth function is called before every connect`, async () => {
    const calls = [];
    const a = client(transport, async () => {
      calls.push(Date.now());
      await sleep(5);
      return `user:fn${calls.length}`;
    });
    a.connect();
    await until(() => a.status === 'connected', 'connected');
    assert.equal(calls.length, 1);
    assert.equal((await a.emit('me.whoami', {})).delta.me.user, 'fn1');
    const token = a.token;
    // Cut the transport: the reconnect asks for a fresh auth.
    if (transport === 'ws') sockets.at(-1).terminate();
    else a._conn.abort();
    await until(() => a.status !== 'connected', 'the cut noticed');
    await until(() => a.status === 'connected', 'connected again');
    assert.equal(calls.length, 2);
    // fn2 is another user: the token bound to fn1 is not handed over.
    assert.notEqual(a.token, token);
    assert.equal((await a.emit('me.whoami', {})).delta.me.user, 'fn2');
    a.close();
  });

  test(`${transport}: a refusal reaches onError as unauthorized, and the client retries`, async () => {
    let calls = 0;
    const a = client(transport, () => {
      calls++;
      return 'deny';
    });
    const errors = [];
    a.onError((e) => errors.push(e));
    a.connect();
    await until(() => errors.length >= 2, 'two refusals');
    assert.deepEqual(errors[0], { code: 'unauthorized', message: 'denied by test' });
    assert.ok(calls >= 2, 'auth asked again before the retry');
    assert.notEqual(a.status, 'connected');
    a.close();
  });
}

test('an auth function that rejects is a failed connect, retried with backoff', async () => {
  let calls = 0;
  const a = client('ws', () => {
    calls++;
    if (calls === 1) return Promise.reject(new Error('no session yet'));
    return 'user:late';
  });
  a.connect();
  await until(() => a.status === 'connected', 'connected');
  assert.equal(calls, 2);
  assert.equal((await a.emit('me.whoami', {})).delta.me.user, 'late');
  a.close();
});
