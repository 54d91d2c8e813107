// The demo page (/room/<id>: web/index.html, web/app.js, /statewire.js) in
// a real headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core, against two statewire instances ("two hosts") on one
// real redis-server, all on loopback. Host 0 runs 2 workers; host 1 runs
// a single worker, so the worker serving a page on host 1 is known (the
// worker-kill scenario). Screenshots go to tests/node/artifacts/.
//   STATEWIRE_BIN=build/statewire node --test tests/node/browser.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { sleep, freePort, waitHealthy } from './harness.mjs';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SKIP = HAVE_CHROMIUM ? false : `${CHROMIUM} is missing (Debian package chromium; scripts/deps.sh installs it)`;

const BIN = process.env.STATEWIRE_BIN;
const REDIS = process.env.REDIS_SERVER || 'redis-server';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const WAIT_MS = 15000;

const procs = [];
const hosts = []; // [{port, proc}]
let dir, sock, browser;


// The worker processes of a statewire master (its children).
function workersOf(pid) {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

before(async () => {
  if (!HAVE_CHROMIUM) return;
  assert.ok(BIN, 'STATEWIRE_BIN must name the statewire binary');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'sw-browser-'));
  sock = join(dir, 'redis.sock');
  procs.push(spawn(REDIS, ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no',
    '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' }));
  for (let i = 0; i < 50; i++) {
    try {
      await new Promise((ok, ko) => { const c = net.connect(sock, () => { c.end(); ok(); }); c.on('error', ko); });
      break;
    } catch { await sleep(100); }
  }
  for (const workers of [2, 1]) {
    const port = await freePort();
    const proc = spawn(BIN, ['--host', '127.0.0.1', '--port', String(port), '--workers', String(workers),
      '--redis', `unix://${sock}`, '--log-level', process.env.DEBUG ? 'debug' : 'warn'],
    { stdio: process.env.DEBUG ? 'inherit' : 'ignore' });
    procs.push(proc);
    await waitHealthy(port);
    hosts.push({ port, proc });
  }
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // launch() gives every run a fresh temporary profile (user-data-dir).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const p of procs.reverse()) p.kill('SIGTERM');
  await sleep(300);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ROOM_SUFFIX = `${process.pid}x${Date.now().toString(36)}`;
const room = (name) => `${name}${ROOM_SUFFIX}`;

// A page of its own browser context (its own sessionStorage: a tab of its
// own), loaded from host h at /room/<id>, once its status is 'connected'.
async function openPage(h, roomId) {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 760 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => { page.errors = (page.errors || []).concat(String(e)); });
  await page.goto(`http://127.0.0.1:${hosts[h].port}/room/${roomId}`);
  await waitText(page, '#status', 'connected');
  await waitText(page, '#room', roomId);
  return page;
}

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 50 });
  } catch (e) {
    const snap = await page.evaluate(() => ({
      status: document.getElementById('status').textContent,
      count: document.getElementById('count').textContent,
      viewers: document.getElementById('viewers').textContent,
      messages: [...document.querySelectorAll('#messages li')].map((li) => li.textContent),
    })).catch(() => null);
    throw new Error(`${what}: ${e.message.split('\n')[0]}; page: ${JSON.stringify(snap)}`);
  }
}

function waitText(page, sel, value) {
  return waitFor(page, ([s, v]) => document.querySelector(s)?.textContent === v, [sel, value],
    `${page.url()} ${sel} == ${JSON.stringify(value)}`);
}

function waitMessages(page, list) {
  return waitFor(page, (want) => {
    const got = [...document.querySelectorAll('#messages li')].map((li) => li.textContent);
    return want.every((w) => got.includes(w));
  }, list, `${page.url()} #messages has ${JSON.stringify(list)}`);
}

const text = (page, sel) => page.textContent(sel);
const messages = (page) => page.$$eval('#messages li', (lis) => lis.map((li) => li.textContent));

test('browser: two pages of one room share the counter and the chat; another room sees none of it',
  { skip: SKIP }, async () => {
    const A = room('a'), B = room('b');
    const a1 = await openPage(0, A); // the two pages are on different hosts
    const a2 = await openPage(1, A);
    const b1 = await openPage(0, B);
    await waitText(a1, '#viewers', '2');
    await waitText(a2, '#viewers', '2');
    assert.equal(await text(a1, '#linked'), 'linked');

    for (let i = 0; i < 3; i++) await a1.click('#inc');
    for (let i = 0; i < 2; i++) await a2.click('#inc');
    await a2.click('#dec');
    await waitText(a1, '#count', '4');
    await waitText(a2, '#count', '4');

    await a1.fill('#name', 'ada');
    await a1.click('#set-name');
    await a2.fill('#name', 'bob');
    await a2.click('#set-name');
    await waitFor(a1, () => window.statewire.state.room?.name === 'ada', undefined, 'a1 name');
    await waitFor(a2, () => window.statewire.state.room?.name === 'bob', undefined, 'a2 name');
    await a1.fill('#chat-text', 'hello from one');
    await a1.click('#send');
    await waitMessages(a1, ['ada: hello from one']);
    await a2.fill('#chat-text', 'hi from two');
    await a2.press('#chat-text', 'Enter'); // the form's submit
    const both = ['ada: hello from one', 'bob: hi from two'];
    await waitMessages(a1, both);
    await waitMessages(a2, both);
    assert.deepEqual(await messages(a1), both, 'in order, each once');
    assert.deepEqual(await messages(a2), both);
    assert.equal(await a1.inputValue('#chat-text'), '', 'the input is cleared after sending');

    await a1.screenshot({ path: join(ARTIFACTS, 'two-viewers.png'), fullPage: true });

    // Room B: its own counter and chat, untouched. A round trip on b1 first,
    // so any stray fan-out would have arrived.
    await b1.click('#toggle-link');
    await waitText(b1, '#linked', 'private');
    await b1.click('#toggle-link');
    await waitText(b1, '#linked', 'linked');
    assert.equal(await text(b1, '#count'), '0');
    assert.equal(await text(b1, '#viewers'), '1');
    assert.deepEqual(await messages(b1), []);
    assert.equal(await text(a1, '#count'), '4', 'room A is unchanged by room B');
    await b1.screenshot({ path: join(ARTIFACTS, 'other-room.png'), fullPage: true });

    for (const p of [a1, a2, b1]) {
      assert.deepEqual(p.errors || [], [], 'no uncaught page errors');
      await p.context().close();
    }
  });

test('browser: the worker serving a page is killed; the page reconnects, clicks made meanwhile apply once',
  { skip: SKIP }, async () => {
    const K = room('k');
    const p = await openPage(1, K); // host 1 has a single worker: the one serving p
    const q = await openPage(0, K);
    await waitText(p, '#viewers', '2');
    await p.click('#inc');
    await waitText(q, '#count', '1');

    // Three real DOM clicks in the same task as the switch to
    // 'reconnecting', so all three are made while the page is disconnected.
    await p.evaluate(() => {
      window.clicksWhile = [];
      const off = window.statewire.onStatus((s) => {
        if (s !== 'reconnecting') return;
        for (let i = 0; i < 3; i++) {
          document.getElementById('inc').click();
          window.clicksWhile.push(window.statewire.status);
        }
        setTimeout(off, 0);
      });
    });
    const master = hosts[1].proc.pid;
    const [worker] = workersOf(master);
    assert.ok(worker, 'the single worker of host 1');
    process.kill(worker, 'SIGKILL');
    await waitFor(p, () => window.clicksWhile.length === 3, undefined, 'clicks while reconnecting');
    assert.deepEqual(await p.evaluate(() => window.clicksWhile), ['reconnecting', 'reconnecting', 'reconnecting']);
    // The other page keeps working meanwhile.
    await q.click('#inc');
    await q.click('#inc');

    await waitText(p, '#status', 'connected');
    await waitText(p, '#count', '6'); // 1 + 3 queued clicks + 2 from q
    await waitText(q, '#count', '6');
    await waitText(p, '#viewers', '2');
    const respawned = workersOf(master);
    assert.equal(respawned.length, 1);
    assert.notEqual(respawned[0], worker, 'the master respawned the worker');

    // Exactly once: one more round trip from each page, then the count.
    await p.click('#inc');
    await q.click('#inc');
    await waitText(p, '#count', '8');
    await waitText(q, '#count', '8');
    await sleep(300);
    assert.equal(await text(p, '#count'), '8');
    assert.equal(await text(q, '#count'), '8');
    const toasts = await p.$$eval('#toasts .toast', (ts) => ts.map((t) => t.textContent));
    assert.deepEqual(toasts.filter((t) => /lost/.test(t)), [], 'no event was lost');
    await p.screenshot({ path: join(ARTIFACTS, 'reconnected.png'), fullPage: true });
    for (const pg of [p, q]) await pg.context().close();
  });

test('browser: a reload keeps the tab\'s state (count, name, token)', { skip: SKIP }, async () => {
  const R = room('r');
  const p = await openPage(0, R);
  await p.fill('#name', 'carol');
  await p.click('#set-name');
  await waitFor(p, () => window.statewire.state.room?.name === 'carol', undefined, 'name set');
  for (let i = 0; i < 2; i++) await p.click('#inc');
  await waitText(p, '#count', '2');
  const token = await p.evaluate(() => sessionStorage.getItem('statewire.token'));
  assert.ok(token, 'a token in sessionStorage');
  assert.equal(token, await p.evaluate(() => window.statewire.token));

  await p.reload();
  await waitText(p, '#status', 'connected');
  await waitText(p, '#count', '2');
  await waitFor(p, () => document.getElementById('name').value === 'carol', undefined, 'name after reload');
  assert.equal(await p.evaluate(() => sessionStorage.getItem('statewire.token')), token, 'same token');
  assert.equal(await p.evaluate(() => window.statewire.token), token);
  await waitText(p, '#viewers', '1'); // the old page's connection is gone
  await p.click('#inc');
  await waitText(p, '#count', '3');
  await p.screenshot({ path: join(ARTIFACTS, 'reloaded.png'), fullPage: true });
  await p.context().close();
});
