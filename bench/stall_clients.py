#!/usr/bin/env python3
"""Stalled readers: N WebSocket clients that join a room and then never read.

Each client connects with a small receive buffer (SO_RCVBUF 4096, set
before connect so the window stays small), upgrades (RFC 6455 4.1), sends
hello and a hydrate on ROUTE, reads until the answer to the hydrate has
arrived, and from then on reads nothing: every fan-out delta of the room
piles up in the server (its output queue, then the socket buffers). The
clients stay open until SIGTERM/SIGINT, or until --hold seconds passed.

Prints one line "stalled: N set up" when all are ready (the caller waits
for it), then, on exit, how many the server dropped (EOF or reset seen on
a poll of the sockets without reading data).

    bench/stall_clients.py --port 8000 --route /room/stall --connections 1000
"""
import argparse
import base64
import json
import os
import select
import signal
import socket
import sys
import time


def frame(text):
    """A masked client text frame (zero masking key leaves the payload as is)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    else:
        head = bytes([0x81, 0x80 | 126, n >> 8, n & 0xFF])
    return head + b"\0\0\0\0" + data


def setup(host, port, route, i):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /_event HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during the upgrade")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise OSError("upgrade refused: " + buf.split(b"\r\n")[0].decode())
    buf = buf.split(b"\r\n\r\n", 1)[1]
    s.sendall(frame(json.dumps({"type": "hello"})) +
              frame(json.dumps({"type": "event", "id": 1, "name": "hydrate",
                                "router": {"path": route}})))
    # Read frames until the answer to the hydrate (a message with "id":1).
    while True:
        while len(buf) < 2:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the hydrate answer")
            buf += chunk
        n = buf[1] & 0x7F
        off = 2
        if n == 126:
            while len(buf) < 4:
                buf += s.recv(65536)
            n = int.from_bytes(buf[2:4], "big")
            off = 4
        elif n == 127:
            while len(buf) < 10:
                buf += s.recv(65536)
            n = int.from_bytes(buf[2:10], "big")
            off = 10
        while len(buf) < off + n:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the hydrate answer")
            buf += chunk
        payload = buf[off:off + n]
        buf = buf[off + n:]
        if b'"id":1' in payload:
            break
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--route", default="/room/stall")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--hold", type=float, default=3600.0)
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    socks = []
    for i in range(a.connections):
        try:
            socks.append(setup(a.host, a.port, a.route, i))
        except OSError as e:
            print(f"stalled: client {i}: {e}", file=sys.stderr)
    print(f"stalled: {len(socks)} set up", flush=True)
    end = time.monotonic() + a.hold
    while not stop and time.monotonic() < end:
        time.sleep(0.2)
    # Which sockets did the server drop? A poll for errors/hang-up only
    # (reading would unstall them).
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLHUP | select.POLLERR | select.POLLRDHUP)
    dropped = sum(1 for _, ev in p.poll(0) if ev & (select.POLLHUP | select.POLLERR | select.POLLRDHUP))
    print(f"stalled: {dropped} of {len(socks)} dropped by the server", flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
