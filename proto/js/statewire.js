// statewire.js — the browser client of statewire (proto/PROTOCOL.md).
// One ES module, no dependencies, no build step; the server serves it at
// /statewire.js.
//
//   import { Statewire } from '/statewire.js';
//   const sw = new Statewire({ url: location.origin, transport: 'auto', route: location.pathname });
//   sw.onStatus((s) => { statusEl.textContent = s; });   // 'connecting' | 'connected' | 'reconnecting' | 'offline'
//   sw.subscribe((state, msg) => render(state));         // after every applied delta
//   sw.onAction('_toast', (payload) => toast(payload.text));
//   sw.connect();
//   const answer = await sw.emit('counter.increment', {}); // the answering delta message
//   // rejected with a StatewireError {code, message}, e.g. 'unknown_event',
//   // 'connection_lost' (written but unanswered when the connection dropped:
//   // it may or may not have been applied), 'closed' (sw.close())
//   sw.state;  // {statePath: {var: value}}; replaced (not mutated) on every delta: read-only
//   sw.token;  // the token in use (a duplicate tab gets a new one from the server)
//   sw.status; sw.lastSeq; sw.resumed; sw.transportInUse ('ws' | 'sse' | null)
//   sw.onError(({code, message}) => ...); // errors answering no event (bad_resume, unauthorized)
//   sw.close(); // rejects queued events with 'closed'; status 'offline'
// onStatus/subscribe/onAction/onError return an unsubscribe function;
// onStatus also calls its listener at once with the current status.
//
// Options: url (http(s) origin, default location.origin), transport
// ('auto' | 'ws' | 'sse'), route (hydrate path, default location.pathname),
// query (hydrate router query, optional), token (initial token when none is
// stored), storage (a sessionStorage-like object), WebSocket (constructor),
// backoff {min: 250, max: 10000, jitter: 0.3} (ms), timeoutMs (10000:
// bound on connect + welcome + sync), auth (see below).
//
// Authentication (docs/auth.md): `auth` is a string (for example a JWT made
// by the app's backend), or a function returning a string or a promise of
// one. A function is called before every connect, reconnects included, so
// it can hand out a fresh token when the last one expires:
//   new Statewire({ auth: async () => (await fetch('/api/statewire-token')).text() });
// The value goes into the hello (`auth`) on WebSocket and into the `auth`
// query parameter of the event stream on SSE; null, undefined or '' send
// none. A function that throws or rejects counts as a failed connect (the
// client retries with backoff). A refusal reaches onError as
// {code: 'unauthorized', message} on both transports; the client keeps
// reconnecting with backoff, calling `auth` again each time, until close().
//
// Behaviour:
// - sessionStorage 'statewire.token' keeps the token, 'statewire.resume'
//   {conn_id, conn_token, last_seq} the credentials of the latest welcome
//   (last_seq updated on every delta).
// - Connect: hello (with resume when credentials are stored), welcome, then
//   the resume sync: a resumed connection gets the missed deltas or a full
//   delta first; otherwise (and on every page load, whose store is empty)
//   the client sends hydrate {router: {path: route}} and waits for its full
//   delta. Only then is the status 'connected' and queued events are sent.
// - Events emitted while not connected wait in a queue (bounded only by the
//   caller) and are sent once, in order, after the sync. Events written to
//   a transport and unanswered when it drops are never resent: they are
//   rejected with code 'connection_lost'.
// - Deltas: per-state shallow merge; full:true replaces the store. last_seq
//   is the highest seq seen (a full delta sets it). Client actions
//   (`events`) run after the delta is applied and subscribers were called.
// - Transports: WebSocket (/_event) by default; SSE (a streamed fetch of
//   GET /_sse) with messages POSTed to /_event (one POST at a time, so they
//   keep their order) for transport:'sse', when there is no WebSocket, or
//   after two failed WebSocket connects in a row (in 'auto' mode; back to
//   WebSocket if SSE fails too).
// - Reconnect: exponential backoff with jitter (250 ms doubling to 10 s,
//   ±30%), at once when the tab becomes visible or the network comes back.
//   A WebSocket closed with 4001 (another tab resumed this connection)
//   drops its credentials: its next hello makes it a tab of its own.

const STORE_TOKEN = 'statewire.token';
const STORE_RESUME = 'statewire.resume';
const WS_OPEN = 1;

const g = globalThis;

/** Error of an event: code as in PROTOCOL.md ("error" codes) or
 * 'connection_lost' / 'closed' / 'transport'. */
export class StatewireError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'StatewireError';
    this.code = code;
  }
}

function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => { m.set(k, String(v)); },
    removeItem: (k) => { m.delete(k); },
  };
}

function defaultStorage() {
  try {
    const s = g.sessionStorage;
    if (s) {
      s.setItem('statewire.probe', '1');
      s.removeItem('statewire.probe');
      return s;
    }
  } catch { /* storage disabled: keep things in memory */ }
  return memoryStorage();
}

function isOffline() {
  return !!g.navigator && g.navigator.onLine === false;
}

export class Statewire {
  constructor(opts = {}) {
    this.url = String(opts.url || (g.location && g.location.origin) || 'http://127.0.0.1:8000').replace(/\/+$/, '');
    this.transport = opts.transport || 'auto';
    this.route = opts.route || (g.location && g.location.pathname) || '/';
    this.query = opts.query || null;
    this.backoff = Object.assign({ min: 250, max: 10000, jitter: 0.3 }, opts.backoff || {});
    this.timeoutMs = opts.timeoutMs || 10000;
    this._auth = opts.auth === undefined ? null : opts.auth;
    this._storage = opts.storage || defaultStorage();
    this._WS = 'WebSocket' in opts ? opts.WebSocket : g.WebSocket;
    this._state = {};
    this._status = 'connecting';
    this._token = this._load(STORE_TOKEN) || opts.token || null;
    const r = this._loadResume();
    this._lastSeq = r ? r.last_seq : 0;
    this.resumed = false;      // the latest welcome resumed the connection
    this.transportInUse = null; // 'ws' | 'sse' while a transport is open
    this._statusFns = new Set();
    this._subs = new Set();
    this._actions = new Map();
    this._errorFns = new Set();
    this._outbox = [];          // never written: sent after the sync
    this._inflight = new Map(); // id -> entry, written and unanswered
    this._nextId = 1;
    this._wanted = false;
    this._gen = 0;              // bumped per connection attempt
    this._conn = null;          // the current transport
    this._synced = false;
    this._hydrated = false;     // a full delta arrived during this page's life
    this._attempt = 0;
    this._wsFailures = 0;
    this._useSse = false;
    this._timer = null;
    this._onVisible = () => {
      if (g.document && g.document.visibilityState === 'hidden') return;
      if (this._wanted && !this._conn) this._reconnectNow();
    };
    this._onOnline = () => {
      if (this._wanted && !this._conn) this._reconnectNow();
    };
    this._onOffline = () => {
      // the browser says the network is gone: stop writing into a dead socket
      if (this._conn) this._lost(this._conn.gen, 'offline');
      else this._setStatus('offline');
    };
  }

  get state() { return this._state; }
  get token() { return this._token; }
  get status() { return this._status; }
  get lastSeq() { return this._lastSeq; }

  /** fn(status), called now and on every change. Returns an unsubscribe function. */
  onStatus(fn) {
    this._statusFns.add(fn);
    fn(this._status);
    return () => this._statusFns.delete(fn);
  }

  /** fn(state, msg) after every applied delta message. Returns an unsubscribe function. */
  subscribe(fn) {
    this._subs.add(fn);
    return () => this._subs.delete(fn);
  }

  /** fn(payload) for each client action `name` (e.g. '_toast'). Returns an unsubscribe function. */
  onAction(name, fn) {
    if (!this._actions.has(name)) this._actions.set(name, new Set());
    this._actions.get(name).add(fn);
    return () => this._actions.get(name).delete(fn);
  }

  /** fn({code, message}) for error messages that answer no event of this client (e.g. bad_resume). */
  onError(fn) {
    this._errorFns.add(fn);
    return () => this._errorFns.delete(fn);
  }

  connect() {
    if (this._wanted || this._closed) return this;
    this._wanted = true;
    if (g.addEventListener) {
      g.addEventListener('online', this._onOnline);
      g.addEventListener('offline', this._onOffline);
    }
    if (g.document && g.document.addEventListener)
      g.document.addEventListener('visibilitychange', this._onVisible);
    this._open();
    return this;
  }

  /** Send event `name` with `payload` (an object). Resolves with the answering
   * delta message ({type:'delta', seq, id, delta, full?, events?}); rejects
   * with a StatewireError. */
  emit(name, payload = {}) {
    if (this._closed) return Promise.reject(new StatewireError('closed', 'client closed'));
    return new Promise((resolve, reject) => {
      // the id is given when the event is written (_flush): ids of one
      // connection must increase, and the hydrate of a new connection goes
      // before the events queued while it was away
      const entry = { msg: { type: 'event', id: 0, name, payload }, resolve, reject };
      this._outbox.push(entry);
      if (this._synced) this._flush();
    });
  }

  close() {
    this._closed = true;
    this._wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    if (g.removeEventListener) {
      g.removeEventListener('online', this._onOnline);
      g.removeEventListener('offline', this._onOffline);
    }
    if (g.document && g.document.removeEventListener)
      g.document.removeEventListener('visibilitychange', this._onVisible);
    if (this._conn) this._lost(this._conn.gen, 'closed');
    for (const e of this._outbox.splice(0)) e.reject(new StatewireError('closed', 'client closed'));
    this._setStatus('offline');
  }

  // ---- storage -----------------------------------------------------------

  _load(key) {
    try { return this._storage.getItem(key); } catch { return null; }
  }

  _save(key, value) {
    try {
      if (value === null) this._storage.removeItem(key);
      else this._storage.setItem(key, value);
    } catch { /* full or disabled: the client still works, without resume after reload */ }
  }

  _loadResume() {
    try {
      const r = JSON.parse(this._load(STORE_RESUME));
      if (r && typeof r.conn_id === 'string' && typeof r.conn_token === 'string')
        return { conn_id: r.conn_id, conn_token: r.conn_token, last_seq: Number(r.last_seq) || 0 };
    } catch { /* absent or corrupt */ }
    return null;
  }

  _saveResume(creds) {
    this._creds = creds;
    this._save(STORE_RESUME, creds ? JSON.stringify({ ...creds, last_seq: this._lastSeq }) : null);
  }

  // ---- status --------------------------------------------------------------

  _setStatus(s) {
    if (s !== 'connected' && isOffline()) s = 'offline';
    if (s === this._status) return;
    this._status = s;
    for (const fn of this._statusFns) {
      try { fn(s); } catch (e) { console.error(e); }
    }
  }

  // ---- connection ------------------------------------------------------------

  _open() {
    clearTimeout(this._timer);
    this._timer = null;
    if (!this._wanted || this._conn) return;
    this._setStatus(this._hydrated || this._attempt > 0 ? 'reconnecting' : 'connecting');
    const gen = ++this._gen;
    this._creds = this._loadResume() || null;
    const sse = this.transport === 'sse' || (this.transport === 'auto' && (!this._WS || this._useSse));
    const conn = { gen, kind: sse ? 'sse' : 'ws', opened: false, welcome: null };
    this._conn = conn;
    conn.deadline = setTimeout(() => this._lost(gen, 'timeout'), this.timeoutMs);
    const go = (auth) => {
      if (this._conn !== conn) return; // timed out or closed meanwhile
      conn.auth = typeof auth === 'string' && auth !== '' ? auth : null;
      if (sse) this._openSse(conn);
      else this._openWs(conn);
    };
    if (typeof this._auth !== 'function') {
      go(this._auth);
      return;
    }
    let pending;
    try {
      pending = Promise.resolve(this._auth());
    } catch (e) {
      pending = Promise.reject(e);
    }
    pending.then(go, () => this._lost(gen, 'auth failed'));
  }

  _emitError(err) {
    for (const fn of this._errorFns) {
      try { fn(err); } catch (e) { console.error(e); }
    }
  }

  _openWs(conn) {
    let ws;
    try {
      ws = new this._WS(this.url.replace(/^http/, 'ws') + '/_event');
    } catch (e) {
      this._lost(conn.gen, 'ws failed');
      return;
    }
    conn.ws = ws;
    ws.onopen = () => {
      if (this._conn !== conn) return;
      conn.opened = true;
      this.transportInUse = 'ws';
      const hello = { type: 'hello' };
      if (this._token) hello.token = this._token;
      if (conn.auth) hello.auth = conn.auth;
      if (this._creds) hello.resume = { conn_id: this._creds.conn_id, conn_token: this._creds.conn_token, last_seq: this._lastSeq };
      conn.sentResume = hello.resume || null;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (this._conn !== conn) return;
      this._onText(conn, typeof ev.data === 'string' ? ev.data : String(ev.data));
    };
    ws.onclose = (ev) => {
      if (ev && ev.code === 4001) this._saveResume(null); // another tab took this connection
      this._lost(conn.gen, 'ws closed');
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  _openSse(conn) {
    const q = new URLSearchParams();
    if (this._token) q.set('token', this._token);
    if (conn.auth) q.set('auth', conn.auth);
    if (this._creds) {
      q.set('conn_id', this._creds.conn_id);
      q.set('conn_token', this._creds.conn_token);
      q.set('last_seq', String(this._lastSeq));
      conn.sentResume = { last_seq: this._lastSeq };
    }
    const ctl = new AbortController();
    conn.abort = () => ctl.abort();
    conn.posting = false;
    conn.postQueue = [];
    const fail = () => this._lost(conn.gen, 'sse closed');
    g.fetch(`${this.url}/_sse?${q}`, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: ctl.signal })
      .then(async (res) => {
        if (!res.ok || !res.body) {
          let err = null;
          try { err = (await res.json()).error; } catch { /* no JSON body */ }
          // a refused authentication is reported as on WebSocket
          if (this._conn === conn && err && err.code === 'unauthorized')
            this._emitError({ code: err.code, message: err.message });
          throw new Error(`SSE ${res.status}`);
        }
        if (this._conn !== conn) return;
        conn.opened = true;
        this.transportInUse = 'sse';
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        let data = [];
        for (;;) {
          const { done, value } = await reader.read();
          if (done || this._conn !== conn) break;
          buf += dec.decode(value, { stream: true });
          const lines = buf.split(/\r\n|\r|\n/);
          buf = lines.pop();
          for (const line of lines) {
            if (line === '') {
              if (data.length && this._conn === conn) this._onText(conn, data.join('\n'));
              data = [];
            } else if (line.startsWith('data:')) {
              data.push(line.slice(line[5] === ' ' ? 6 : 5));
            } // event:, id: and ':' comments: the JSON carries the type and seq
          }
        }
        fail();
      })
      .catch(fail);
  }

  // Write messages (objects) on the open transport. Returns false when
  // nothing could be written (not open).
  _write(conn, msgs) {
    if (conn.kind === 'ws') {
      if (!conn.ws || conn.ws.readyState !== WS_OPEN) return false;
      for (const m of msgs) conn.ws.send(JSON.stringify(m));
      return true;
    }
    return !!conn.welcome;
  }

  // Send queued entries in order: WebSocket at once, SSE as one POST at a time.
  _flush() {
    const conn = this._conn;
    if (!conn || !this._synced || !this._outbox.length) return;
    if (conn.kind === 'ws') {
      if (!this._write(conn, [])) return;
      while (this._outbox.length) {
        const e = this._outbox.shift();
        e.msg.id = this._nextId++;
        this._inflight.set(e.msg.id, e);
        this._write(conn, [e.msg]);
      }
      return;
    }
    for (const e of this._outbox) e.msg.id = this._nextId++;
    conn.postQueue.push(...this._outbox.splice(0));
    this._pumpPost(conn);
  }

  _pumpPost(conn) {
    if (conn.posting || !conn.postQueue.length || this._conn !== conn) return;
    const batch = conn.postQueue.splice(0);
    conn.posting = true;
    for (const e of batch) this._inflight.set(e.msg.id, e);
    const body = JSON.stringify({ conn_id: conn.welcome.conn_id, conn_token: conn.welcome.conn_token, messages: batch.map((e) => e.msg) });
    g.fetch(`${this.url}/_event`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, cache: 'no-store' })
      .then(async (res) => {
        conn.posting = false;
        if (res.status === 202 || res.ok) {
          this._pumpPost(conn);
          return;
        }
        let err = null;
        try { err = (await res.json()).error; } catch { /* no body */ }
        if (res.status === 400 || res.status === 413) {
          // refused as a whole: never applied
          for (const e of batch) {
            if (this._inflight.delete(e.msg.id) && e.reject)
              e.reject(new StatewireError((err && err.code) || 'bad_message', (err && err.message) || `HTTP ${res.status}`));
          }
          this._pumpPost(conn);
          return;
        }
        // 403/404/5xx: not taken, so never applied: queue again, reconnect
        const again = [];
        for (const e of batch.concat(conn.postQueue.splice(0))) {
          this._inflight.delete(e.msg.id);
          if (e.resolve) again.push(e);
        }
        this._outbox.unshift(...again);
        this._lost(conn.gen, `POST ${res.status}`);
      })
      .catch(() => {
        // the request may have reached the server: those are connection_lost
        conn.posting = false;
        this._lost(conn.gen, 'POST failed');
      });
  }

  // A connection attempt or an open connection ended.
  _lost(gen, why) {
    const conn = this._conn;
    if (!conn || conn.gen !== gen) return;
    this._conn = null;
    this.transportInUse = null;
    clearTimeout(conn.deadline);
    if (conn.ws) {
      conn.ws.onopen = conn.ws.onmessage = conn.ws.onclose = conn.ws.onerror = null;
      try { conn.ws.close(); } catch { /* already closed */ }
    }
    if (conn.abort) conn.abort();
    // entries never written go back to the queue (not the hydrate: each connection sends its own)
    if (conn.postQueue) this._outbox.unshift(...conn.postQueue.splice(0).filter((e) => e.resolve));
    const wasSynced = this._synced;
    this._synced = false;
    for (const e of this._inflight.values()) {
      if (e.reject) e.reject(new StatewireError('connection_lost', 'the connection dropped before the answer; the event may have been applied'));
    }
    this._inflight.clear();
    // transport choice for the next attempt ('auto')
    if (!wasSynced && !isOffline()) {
      if (conn.kind === 'ws') {
        if (!conn.opened && ++this._wsFailures >= 2) this._useSse = true;
      } else if (this._useSse && !conn.welcome) {
        this._useSse = false; // SSE fails too: the server is away, not WebSocket
        this._wsFailures = 0;
      }
    }
    if (!this._wanted) return;
    this._setStatus('reconnecting');
    const b = this.backoff;
    const base = Math.min(b.max, b.min * 2 ** Math.min(this._attempt, 30));
    const delay = Math.max(0, base * (1 + (Math.random() * 2 - 1) * b.jitter));
    this._attempt++;
    this._timer = setTimeout(() => this._open(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._timer);
    this._timer = null;
    this._open();
  }

  // ---- messages ----------------------------------------------------------------

  _onText(conn, text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (!m || typeof m !== 'object') return;
    if (m.type === 'welcome') this._onWelcome(conn, m);
    else if (m.type === 'delta') this._onDelta(conn, m);
    else if (m.type === 'error') this._onError(conn, m);
  }

  _onWelcome(conn, m) {
    conn.welcome = m;
    if (m.token && m.token !== this._token) {
      this._token = m.token;
      this._save(STORE_TOKEN, m.token);
    }
    this.resumed = !!m.resumed;
    if (!m.resumed) this._lastSeq = 0;
    this._saveResume({ conn_id: m.conn_id, conn_token: m.conn_token });
    if (!m.resumed || !this._hydrated) {
      // a fresh connection, or a page whose store is empty: hydrate
      const id = this._nextId++;
      conn.hydrateId = id;
      const ev = { type: 'event', id, name: 'hydrate', router: { path: this.route } };
      if (this.query) ev.router.query = this.query;
      this._inflight.set(id, { msg: ev });
      if (conn.kind === 'ws') this._write(conn, [ev]);
      else {
        conn.postQueue.push({ msg: ev });
        this._pumpPost(conn);
      }
      return;
    }
    // resumed: the missed deltas or one full delta come first
    const target = m.seq || 0;
    const sent = conn.sentResume ? conn.sentResume.last_seq : 0;
    conn.syncTarget = target;
    conn.needFull = sent > target;
    if (sent === target) this._onSynced(conn);
  }

  _onSynced(conn) {
    if (this._synced || this._conn !== conn) return;
    clearTimeout(conn.deadline);
    this._synced = true;
    this._attempt = 0;
    if (conn.kind === 'ws') this._wsFailures = 0;
    this._setStatus('connected');
    this._flush();
  }

  _onDelta(conn, m) {
    const d = m.delta && typeof m.delta === 'object' ? m.delta : {};
    if (m.full) {
      this._state = { ...d };
      this._hydrated = true;
      if (typeof m.seq === 'number') this._lastSeq = m.seq;
    } else {
      const next = { ...this._state };
      for (const [path, vars] of Object.entries(d)) next[path] = { ...(next[path] || {}), ...vars };
      this._state = next;
      if (typeof m.seq === 'number' && m.seq > this._lastSeq) this._lastSeq = m.seq;
    }
    if (this._creds) this._saveResume(this._creds);
    for (const fn of this._subs) {
      try { fn(this._state, m); } catch (e) { console.error(e); }
    }
    for (const a of Array.isArray(m.events) ? m.events : []) {
      const fns = a && this._actions.get(a.name);
      if (!fns) continue;
      for (const fn of fns) {
        try { fn(a.payload === undefined ? {} : a.payload, a); } catch (e) { console.error(e); }
      }
    }
    if (m.id !== undefined) {
      const e = this._inflight.get(m.id);
      if (e) {
        this._inflight.delete(m.id);
        if (e.resolve) e.resolve(m);
      }
      if (m.id === conn.hydrateId) this._onSynced(conn);
    } else if (!this._synced && conn.welcome && conn.hydrateId === undefined &&
               (m.full || (!conn.needFull && this._lastSeq >= conn.syncTarget))) {
      this._onSynced(conn);
    }
  }

  _onError(conn, m) {
    const e = m.id !== undefined ? this._inflight.get(m.id) : null;
    if (e) {
      this._inflight.delete(m.id);
      if (e.reject) e.reject(new StatewireError(m.code, m.message));
      else if (m.id === conn.hydrateId) this._lost(conn.gen, `hydrate: ${m.code}`); // retry later
      return;
    }
    if (m.code === 'bad_resume') this._saveResume(null); // the welcome that follows is fresh
    this._emitError({ code: m.code, message: m.message });
  }
}

export default Statewire;
