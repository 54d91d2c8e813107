// statewire behind a load balancer without Docker: Debian's nginx
// (/usr/sbin/nginx) with a config generated from deploy/nginx.conf (the
// upstream hosts become two loopback statewire instances, pid, logs and
// temp files go to a temp prefix, one foreground process) in front of two
// statewire instances on one real redis-server.
//   STATEWIRE_BIN=build/statewire node --test tests/node/nginx.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import WebSocket from 'ws';
import { sleep, freePort, waitHealthy } from './harness.mjs';

const NGINX = '/usr/sbin/nginx';
const SKIP = existsSync(NGINX) ? false : `${NGINX} is missing (Debian package nginx; scripts/deps.sh installs it)`;
const CONF = new URL('../../deploy/nginx.conf', import.meta.url);

const BIN = process.env.STATEWIRE_BIN;
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const procs = [];
const hosts = []; // [{port, proc}]
let dir, sock, nginx, lbPort;


function startHost(port) {
  const proc = spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--workers', '2',
    '--redis', `unix://${sock}`, '--log-level', process.env.DEBUG ? 'debug' : 'warn'],
  { stdio: process.env.DEBUG ? 'inherit' : 'ignore' });
  procs.push(proc);
  return proc;
}

const exited = (proc) => (proc.exitCode !== null || proc.signalCode !== null
  ? Promise.resolve()
  : new Promise((r) => proc.once('exit', r)));

// deploy/nginx.conf with the upstream hosts, the listen address, pid, logs
// and temp paths replaced; one foreground process. Each response names its
// upstream (X-Upstream) so the test knows which host a client is on.
function nginxConf(prefix, listen, ports) {
  let c = readFileSync(CONF, 'utf8');
  const subst = (re, to) => {
    assert.match(c, re, `deploy/nginx.conf has ${re}`);
    c = c.replace(re, to);
  };
  subst(/server\s+statewire1:8000/, `server 127.0.0.1:${ports[0]}`);
  subst(/server\s+statewire2:8000/, `server 127.0.0.1:${ports[1]}`);
  subst(/listen\s+80\s*;/, `listen 127.0.0.1:${listen};\n        add_header X-Upstream $upstream_addr always;`);
  subst(/access_log\s+\S+\s+statewire\s*;/, `access_log ${prefix}/access.log statewire;`);
  subst(/error_log\s+[^;]+;/, `error_log ${prefix}/error.log warn;`);
  subst(/worker_rlimit_nofile\s+\d+\s*;/, '');
  subst(/worker_connections\s+\d+\s*;/, 'worker_connections 512;');
  subst(/http\s*\{/, `http {
    client_body_temp_path ${prefix}/client_body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;`);
  return `daemon off;\nmaster_process off;\npid ${prefix}/nginx.pid;\nerror_log ${prefix}/error.log warn;\n${c}`;
}

before(async () => {
  if (SKIP) return;
  assert.ok(BIN, 'STATEWIRE_BIN must name the statewire binary');
  dir = mkdtempSync(join(tmpdir(), 'sw-nginx-'));
  sock = join(dir, 'redis.sock');
  procs.push(spawn(REDIS, ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) {
    try {
      await new Promise((ok, ko) => { const c = net.connect(sock, () => { c.end(); ok(); }); c.on('error', ko); });
      break;
    } catch { await sleep(100); }
  }
  for (let h = 0; h < 2; h++) {
    const port = await freePort();
    const proc = startHost(port);
    await waitHealthy(port);
    hosts.push({ port, proc });
  }
  const prefix = join(dir, 'nginx');
  mkdirSync(prefix);
  lbPort = await freePort();
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConf(prefix, lbPort, hosts.map((h) => h.port)));
  nginx = spawn(NGINX, ['-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf],
    { stdio: process.env.DEBUG ? 'inherit' : 'ignore' });
  procs.push(nginx);
  try {
    await waitHealthy(lbPort);
  } catch (e) {
    let log = '';
    try { log = readFileSync(join(prefix, 'error.log'), 'utf8'); } catch {}
    throw new Error(`nginx did not come up: ${log}`);
  }
});

after(async () => {
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await Promise.race([Promise.all(procs.map(exited)), sleep(3000)]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// A WebSocket client through nginx with a message queue; ws.upstream is
// the statewire host (127.0.0.1:port) that answered through nginx; ws.closed
// resolves with the close code.
function wsOpen(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/_event`);
    const queue = [];
    const waiters = [];
    ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
    // $upstream_addr lists every upstream tried ("a, b" when a failed)
    ws.on('upgrade', (res) => { ws.upstream = String(res.headers['x-upstream']).split(', ').pop(); });
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

test('nginx: a WebSocket client whose host stops gracefully resumes through nginx on the other host',
  { skip: SKIP }, async () => {
    const a = await wsOpen(lbPort);
    const host = hosts.findIndex((h) => a.upstream === `127.0.0.1:${h.port}`);
    assert.ok(host >= 0, `nginx names the upstream (${a.upstream})`);
    a.sendJson({ type: 'hello', token: 'ng-a' });
    const welcome = await a.next((m) => m.type === 'welcome');
    a.sendJson({ type: 'event', id: 1, name: 'hydrate', router: { path: '/room/ng' } });
    const full = await a.next((m) => m.id === 1);
    assert.equal(full.full, true);
    assert.equal(full.delta.counter.count, 0);
    let last;
    for (let i = 0; i < 3; i++) {
      a.sendJson({ type: 'event', id: 10 + i, name: 'counter.increment' });
      last = await a.next((m) => m.id === 10 + i);
    }
    assert.equal(last.delta.counter.count, 3);

    // Its host stops gracefully: the client gets 1001 (going away) and
    // connects again through nginx, which skips the stopped host.
    const gone = hosts[host];
    const other = hosts[1 - host];
    gone.proc.kill('SIGQUIT');
    assert.equal(await a.closed, 1001);

    const b = await wsOpen(lbPort);
    assert.equal(b.upstream, `127.0.0.1:${other.port}`, 'nginx passed the client to the other host');
    b.sendJson({ type: 'hello', token: 'ng-a',
      resume: { conn_id: welcome.conn_id, conn_token: welcome.conn_token, last_seq: last.seq } });
    const w2 = await b.next((m) => m.type === 'welcome');
    assert.equal(w2.resumed, true);
    assert.equal(w2.token, 'ng-a');
    b.sendJson({ type: 'event', id: 20, name: 'counter.increment' });
    const d = await b.next((m) => m.id === 20);
    assert.equal(d.delta.counter.count, 4, 'the state is intact');
    assert.ok(w2.seq >= last.seq, 'the server has every delta the client saw');

    // Every new connection goes to the remaining host while the first is down.
    for (let i = 0; i < 3; i++) {
      const c = await wsOpen(lbPort);
      assert.equal(c.upstream, `127.0.0.1:${other.port}`);
      c.close();
    }

    // The stopped host comes back on its port; nginx uses it again.
    await exited(gone.proc);
    gone.proc = startHost(gone.port);
    await waitHealthy(gone.port);
    b.close();
  });

test('nginx: SSE through nginx streams without buffering; POSTs through nginx apply', { skip: SKIP }, async () => {
  const ctl = new AbortController();
  const t0 = Date.now();
  const res = await fetch(`http://127.0.0.1:${lbPort}/_sse?token=ng-sse&auth=secret-jwt-ng`, {
    headers: { Accept: 'text/event-stream' }, signal: ctl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const events = [];
  const pump = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
          if (data) events.push({ at: Date.now(), msg: JSON.parse(data) });
        }
      }
    } catch { /* aborted */ }
  })();
  const got = async (pred, ms = 3000) => {
    const until = Date.now() + ms;
    for (;;) {
      const e = events.find((x) => pred(x.msg));
      if (e) return e;
      if (Date.now() > until) throw new Error(`timeout; events so far: ${JSON.stringify(events.map((x) => x.msg))}`);
      await sleep(20);
    }
  };
  // The welcome is a few hundred bytes: buffered by a proxy, it would not
  // arrive before the stream ends.
  const welcome = (await got((m) => m.type === 'welcome')).msg;
  assert.ok(Date.now() - t0 < 3000);
  const post = async (messages) => {
    const r = await fetch(`http://127.0.0.1:${lbPort}/_event`, { method: 'POST',
      body: JSON.stringify({ conn_id: welcome.conn_id, conn_token: welcome.conn_token, messages }) });
    assert.equal(r.status, 202);
  };
  await post([{ type: 'event', id: 1, name: 'hydrate', router: { path: '/room/ngsse' } }]);
  assert.equal((await got((m) => m.id === 1)).msg.full, true);
  for (let i = 0; i < 4; i++) await post([{ type: 'event', id: 10 + i, name: 'counter.increment' }]);
  const lastEv = (await got((m) => m.id === 13)).msg;
  assert.equal(lastEv.delta.counter.count, 4);
  assert.deepEqual(events.map((x) => x.msg.id).filter((id) => id >= 10), [10, 11, 12, 13], 'in order, each once');
  ctl.abort();
  await pump;
  // Credentials in event-stream URLs never reach the proxy's access log.
  // nginx logs the stream once it has seen the client go: wait for it
  // (at most 5 s).
  let log = '';
  for (let i = 0; i < 50; i++) {
    log = readFileSync(join(dir, 'nginx', 'access.log'), 'utf8');
    if (/GET \/_sse HTTP/.test(log)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(log, /GET \/_sse HTTP/, 'the stream is logged, without its query');
  assert.doesNotMatch(log, /secret-jwt-ng|auth=|conn_token/);
});
