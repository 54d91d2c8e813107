// Helpers shared by the node tests: ports, waiting for a server.
import net from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A free loopback TCP port (bind port 0, read it, close: a small race).
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Wait until GET /healthz on 127.0.0.1:port answers 200 (10 s at most).
export async function waitHealthy(port) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.status === 200) return;
    } catch {}
    await sleep(50);
  }
  throw new Error(`statewire on ${port} not healthy`);
}
