#!/usr/bin/env bash
# Stalled readers: what clients that stop reading cost a host, and what
# they do to healthy clients. One redis-server and one statewire (release
# build), then the same closed-loop increments on one room twice: alone,
# and with --stalled clients in that room that never read (bench/
# stall_clients.py). Reports, side by side: the healthy clients' events/s
# and p50/p99, the server's RSS (master + workers), the kernel's TCP
# socket memory (/proc/net/sockstat "TCP ... mem", pages of 4 KiB) at its
# peak during the run, how many stalled readers the server dropped, and
# the CPU the hypervisor stole. Not run by CI.
#   bench/stalled.sh [--build DIR] [--stalled N] [--connections N]
#                    [--duration S] [--warmup S] [--max-send-bytes N] [--workers N]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-rel
STALLED=1000
CONNS=50
DURATION=10
WORKERS=2
MAX_SEND=262144
WARMUP=2
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --stalled) STALLED=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --max-send-bytes) MAX_SEND=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stalled: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
if [ ! -x "$BUILD/statewire" ] || [ ! -x "$BUILD/statewire-bench" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target statewire statewire-bench >/dev/null
fi
ulimit -n "$(ulimit -Hn)"
DIR=$(mktemp -d /tmp/statewire-stalled.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
REDIS_PID="" SW_PID="" STALL_PID=""
cleanup() {
  [ -n "$STALL_PID" ] && kill "$STALL_PID" 2>/dev/null || true
  [ -n "$SW_PID" ] && kill -TERM "$SW_PID" 2>/dev/null && wait "$SW_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
redis-server --port 0 --unixsocket "$DIR/redis.sock" --unixsocketperm 700 --save "" \
  --appendonly no --dir "$DIR" --daemonize no --loglevel warning >/dev/null &
REDIS_PID=$!
for _ in $(seq 1 50); do [ -S "$DIR/redis.sock" ] && break; sleep 0.1; done
REDIS="unix://$DIR/redis.sock"
"$BUILD/statewire" --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" --redis "$REDIS" \
  --max-send-bytes "$MAX_SEND" --max-events-per-s 0 --log-level warn 2>"$DIR/server.log" &
SW_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

rss_kb() { # master + workers
  local total=0 p
  for p in $SW_PID $(cat "/proc/$SW_PID/task/$SW_PID/children" 2>/dev/null); do
    total=$(( total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
tcp_mem() { awk '/^TCP:/ { for (i = 1; i <= NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }

# run NAME ROUTE: the closed loop on ROUTE, sampling sockstat and RSS
run() {
  local name=$1 route=$2 peak_mem=0 peak_rss=0 m r
  "$BUILD/statewire-bench" --port "$PORT" --route "$route" --connections "$CONNS" \
    --duration "$DURATION" --warmup "$WARMUP" --pid "$SW_PID" --redis "$REDIS" \
    --json "$DIR/$name.json" >"$DIR/$name.txt" 2>&1 &
  local bp=$!
  while kill -0 "$bp" 2>/dev/null; do
    m=$(tcp_mem); r=$(rss_kb)
    [ "$m" -gt "$peak_mem" ] && peak_mem=$m
    [ "$r" -gt "$peak_rss" ] && peak_rss=$r
    sleep 0.2
  done
  wait "$bp" || { echo "stalled: bench run $name failed:"; cat "$DIR/$name.txt"; exit 1; }
  echo "$peak_mem $peak_rss" >"$DIR/$name.peak"
}

MEM0=$(tcp_mem); RSS0=$(rss_kb)
run alone /room/stall-alone
python3 bench/stall_clients.py --port "$PORT" --route /room/stall-busy \
  --connections "$STALLED" >"$DIR/stall.txt" 2>"$DIR/stall.err" &
STALL_PID=$!
for _ in $(seq 1 600); do grep -q "set up" "$DIR/stall.txt" 2>/dev/null && break; sleep 0.1; done
grep "set up" "$DIR/stall.txt" || { echo "stalled: readers not set up"; cat "$DIR/stall.err"; exit 1; }
MEM1=$(tcp_mem); RSS1=$(rss_kb)
run stalled /room/stall-busy
kill -TERM "$STALL_PID"; wait "$STALL_PID" 2>/dev/null || true; STALL_PID=""
DROPPED=$(grep -o '[0-9]* of [0-9]* dropped' "$DIR/stall.txt" || echo "?")

python3 - "$DIR" "$STALLED" "$MAX_SEND" "$MEM0" "$RSS0" "$MEM1" "$RSS1" "$DROPPED" <<'EOF'
import json, sys
d, stalled, max_send = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mem0, rss0, mem1, rss1 = (int(x) for x in sys.argv[4:8])
dropped = sys.argv[8]
def load(n):
    j = json.load(open(f"{d}/{n}.json"))
    pm, pr = (int(x) for x in open(f"{d}/{n}.peak").read().split())
    return j, pm, pr
a, am, ar = load("alone")
b, bm, br = load("stalled")
def lat(j, q): return j.get("rtt_us", {}).get(q, float("nan"))
def steal(j): return round(j.get("cpu_steal_pct", float("nan")), 1)
print(f"stalled readers: {stalled} in the room, --max-send-bytes {max_send}; dropped: {dropped}")
print(f"{'':34}{'alone':>14}{'with stalled':>14}")
print(f"{'healthy events/s':34}{a.get('events_per_s', 0):>14.0f}{b.get('events_per_s', 0):>14.0f}")
for q in ("p50", "p99"):
    print(f"{'healthy RTT ' + q + ' us':34}{lat(a, q):>14.0f}{lat(b, q):>14.0f}")
print(f"{'server RSS peak MiB':34}{ar / 1024:>14.1f}{br / 1024:>14.1f}")
print(f"{'kernel TCP mem peak MiB':34}{am * 4 / 1024:>14.1f}{bm * 4 / 1024:>14.1f}")
print(f"{'  per stalled reader KiB':34}{'':>14}{(bm - mem0) * 4 / max(stalled, 1):>14.1f}")
print(f"{'  server RSS per stalled KiB':34}{'':>14}{(br - rss0) / max(stalled, 1):>14.1f}")
print(f"(set-up: TCP mem {mem0 * 4 / 1024:.1f} -> {mem1 * 4 / 1024:.1f} MiB, RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB)")
print(f"{'CPU stolen %':34}{steal(a):>14}{steal(b):>14}")
EOF
