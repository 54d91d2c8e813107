#!/usr/bin/env bash
# Smoke run of the load generator against a real cluster (redis-server +
# statewire with 2 workers), for CI: a few connections for a second. Fails
# when the bench reports no completed event or errors. The bench sends as
# fast as the server answers, so the per-connection rate limit is off.
#   bash bench/smoke.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DIR=$(mktemp -d /tmp/statewire-smoke.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port 0 --unixsocket "$DIR/redis.sock" --unixsocketperm 700 --save "" \
  --appendonly no --dir "$DIR" --daemonize no --loglevel warning &
REDIS_PID=$!
SW_PID=""
cleanup() {
  [ -n "$SW_PID" ] && kill -TERM "$SW_PID" 2>/dev/null && wait "$SW_PID" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 1 50); do [ -S "$DIR/redis.sock" ] && break; sleep 0.1; done
"$BUILD/statewire" --host 127.0.0.1 --port "$PORT" --workers 2 \
  --redis "unix://$DIR/redis.sock" --max-events-per-s 0 --log-level warn \
  2>"$DIR/server.log" &
SW_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! "$BUILD/statewire-bench" --port "$PORT" --smoke --pid "$SW_PID" \
     --redis "unix://$DIR/redis.sock" --json "$DIR/bench.json"; then
  echo "bench smoke FAILED; server log:"; cat "$DIR/server.log"; exit 1
fi
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["events"]>0, r' "$DIR/bench.json"
# Shared state: a small fan-out (no missing delivery) and a hot room
# (final count == acknowledged increments).
for scenario in fanout hotroom; do
  if ! "$BUILD/statewire-bench" --port "$PORT" --scenario "$scenario" --smoke \
       --pid "$SW_PID" --redis "unix://$DIR/redis.sock" --json "$DIR/$scenario.json"; then
    echo "bench smoke ($scenario) FAILED; server log:"; cat "$DIR/server.log"; exit 1
  fi
done
echo "bench smoke: 3 passed, 0 failed"
