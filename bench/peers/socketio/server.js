'use strict';
// The rooms counter demo built the way a Socket.IO user builds it, as the
// peer of statewire in bench/compare:
//   - socket.io 4.8 over WebSocket only (transports: ["websocket"]), so the
//     cluster needs no sticky sessions;
//   - N worker processes via node's `cluster` module behind one port (the
//     primary accepts and hands connections to the workers round-robin);
//   - per-client state in Redis (node-redis v4): a hash per token, a hash
//     per room, a set of viewers per room;
//   - fan-out across processes through @socket.io/redis-adapter.
// It answers the statewire demo's messages used by statewire-bench, with
// the same shapes, carried as Socket.IO events: the client emits "event"
// with a client message, the server emits "message" with a server message
// (see bench/README.md, "Socket.IO peer").
//
//   node server.js --workers N --port P --redis URL [--host H]
//   URL: redis://host:port[/db] or unix:///path/to/redis.sock

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const http = require('node:http');

function parseArgs(argv) {
  const o = { workers: 2, port: 8000, host: '127.0.0.1', redis: 'redis://127.0.0.1:6379' };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--workers') o.workers = parseInt(v, 10);
    else if (k === '--port') o.port = parseInt(v, 10);
    else if (k === '--host') o.host = v;
    else if (k === '--redis') o.redis = v;
    else {
      console.error(`usage: node server.js --workers N --port P --redis URL [--host H] (bad ${k})`);
      process.exit(2);
    }
    i++;
  }
  if (!(o.workers >= 1) || !(o.port >= 1 && o.port <= 65535)) {
    console.error('server.js: --workers >= 1 and --port 1..65535');
    process.exit(2);
  }
  return o;
}

const opts = parseArgs(process.argv);

if (cluster.isPrimary) {
  // Same layout as statewire: one master, N workers, one port.
  let stopping = false;
  for (let i = 0; i < opts.workers; i++) cluster.fork();
  cluster.on('exit', (w, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
      return;
    }
    console.error(`worker ${w.process.pid} exited (${signal || code}), respawning`);
    cluster.fork();
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  worker().catch((err) => {
    console.error('worker failed:', err);
    process.exit(1);
  });
}

function redisOptions(url) {
  if (url.startsWith('unix://')) return { socket: { path: url.slice('unix://'.length) } };
  return { url };
}

async function worker() {
  const { createClient } = require('redis');
  const { Server } = require('socket.io');
  const { createAdapter } = require('@socket.io/redis-adapter');

  // One connection for the state, a pub/sub pair for the adapter.
  const db = createClient(redisOptions(opts.redis));
  const pub = createClient(redisOptions(opts.redis));
  const sub = pub.duplicate();
  for (const c of [db, pub, sub]) c.on('error', (err) => console.error('redis:', err.message));
  await Promise.all([db.connect(), pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(httpServer, {
    transports: ['websocket'],
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });

  const PREFIX = 'sio:';
  const tokKey = (token) => `${PREFIX}tok:${token}`;
  const roomKey = (id) => `${PREFIX}room:${id}`;
  const viewersKey = (id) => `${PREFIX}room:${id}:viewers`;
  const ROOM_ID = /^[A-Za-z0-9_:.-]{1,59}$/; // as statewire's room:<id> shared token

  const send = (socket, msg) => socket.emit('message', msg);
  const fail = (socket, id, code, message) =>
    send(socket, id === undefined ? { type: 'error', code, message } : { type: 'error', id, code, message });

  function roomOf(path) {
    const m = /^\/room\/([^/?#]+)$/.exec(path || '');
    return m && ROOM_ID.test(m[1]) ? m[1] : null;
  }

  // hydrate: the full state (id), then the delta on_load makes (no id);
  // on /room/<id> the counter follows the room's and the socket joins it.
  async function hydrate(socket, msg) {
    const s = socket.data;
    const path = msg.router && typeof msg.router.path === 'string' ? msg.router.path : '/';
    const room = roomOf(path);
    const old = s.room;
    const tx = db.multi().hIncrBy(tokKey(s.token), 'loads', 1).hmGet(tokKey(s.token), ['count', 'name']);
    if (old && old !== room) tx.sRem(viewersKey(old), socket.id);
    if (room) tx.sAdd(viewersKey(room), socket.id).sCard(viewersKey(room)).hGet(roomKey(room), 'count');
    const r = await tx.exec();
    if (old && old !== room) socket.leave(`room:${old}`);
    s.room = room;
    const loads = Number(r[0]);
    const [ownCount, name] = r[1];
    const k = old && old !== room ? 3 : 2;
    const viewers = room ? Number(r[k + 1]) : 0;
    const count = room ? Number(r[k + 2] || 0) : Number(ownCount || 0);
    // the full state is the one before on_load: linked only if it already was
    const wasLinked = !!room && old === room;
    const fullCount = wasLinked ? count : Number(ownCount || 0);
    const before = {
      room: { loads: loads - 1, name: name || '', room_id: room || 'lobby', current_count: fullCount },
      counter: { count: fullCount, linked: wasLinked, viewers: wasLinked ? viewers : 0 },
      chat: { messages: [] },
    };
    send(socket, { type: 'delta', seq: s.seq, id: msg.id, delta: before, full: true });
    s.seq++;
    if (!room) {
      send(socket, { type: 'delta', seq: s.seq, delta: { room: { loads } } });
      return;
    }
    socket.join(`room:${room}`);
    send(socket, {
      type: 'delta',
      seq: s.seq,
      delta: { room: { loads }, counter: { linked: true, count, viewers }, chat: { messages: [] } },
    });
    // presence: the others see one more viewer
    socket.to(`room:${room}`).emit('message', { type: 'delta', delta: { counter: { viewers } } });
  }

  async function increment(socket, msg) {
    const s = socket.data;
    if (!s.room) {
      const n = await db.hIncrBy(tokKey(s.token), 'count', 1);
      s.seq++;
      send(socket, {
        type: 'delta',
        seq: s.seq,
        id: msg.id,
        delta: { counter: { count: n }, room: { current_count: n } },
      });
      return;
    }
    const room = s.room;
    const n = await db.hIncrBy(roomKey(room), 'count', 1);
    const delta = { counter: { count: n }, room: { current_count: n } };
    s.seq++;
    send(socket, { type: 'delta', seq: s.seq, id: msg.id, delta });
    // one packet for the whole room, every process (redis-adapter PUBLISH)
    socket.to(`room:${room}`).emit('message', { type: 'delta', delta });
  }

  async function onEvent(socket, msg) {
    if (!msg || typeof msg !== 'object') return fail(socket, undefined, 'bad_message', 'not an object');
    const s = socket.data;
    if (msg.type === 'hello') {
      if (s.token) return fail(socket, undefined, 'bad_message', 'hello twice');
      s.token = typeof msg.token === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(msg.token)
        ? msg.token
        : crypto.randomBytes(16).toString('hex');
      s.seq = 0;
      send(socket, {
        type: 'welcome',
        token: s.token,
        conn_id: socket.id,
        conn_token: crypto.randomBytes(16).toString('hex'),
      });
      return;
    }
    if (msg.type !== 'event') return fail(socket, msg.id, 'bad_message', `unknown type ${msg.type}`);
    if (!Number.isInteger(msg.id)) return fail(socket, undefined, 'bad_message', 'event without id');
    if (!s.token) return fail(socket, msg.id, 'bad_message', 'event before hello');
    try {
      if (msg.name === 'hydrate') await hydrate(socket, msg);
      else if (msg.name === 'counter.increment') await increment(socket, msg);
      else fail(socket, msg.id, 'unknown_event', `no handler ${msg.name}`);
    } catch (err) {
      fail(socket, msg.id, 'state_unavailable', String(err && err.message));
    }
  }

  io.on('connection', (socket) => {
    socket.data.room = null;
    socket.on('event', (msg) => {
      onEvent(socket, msg);
    });
    socket.on('disconnect', () => {
      const room = socket.data.room;
      if (room) db.sRem(viewersKey(room), socket.id).catch(() => {});
    });
  });

  httpServer.listen(opts.port, opts.host);
  const stop = () => {
    io.close();
    Promise.allSettled([db.quit(), pub.quit(), sub.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
