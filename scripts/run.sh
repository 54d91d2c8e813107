#!/usr/bin/env bash
# Build statewire (release), start a local redis-server and run the
# cluster (master + workers) serving the demo app on :8000.
#   PORT=8000 WORKERS=$(nproc) REDIS_PORT=6390 bash scripts/run.sh [extra statewire flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
PORT=${PORT:-8000}
REDIS_PORT=${REDIS_PORT:-6390}
DATA=$(mktemp -d /tmp/statewire-redis.XXXXXX)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$DATA" --daemonize no --loglevel warning &
REDIS_PID=$!
cleanup() { kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
echo "redis-server on 127.0.0.1:$REDIS_PORT; statewire on :$PORT (Ctrl-C stops both)"
"$BUILD/statewire" --port "$PORT" --redis "redis://127.0.0.1:$REDIS_PORT/0" \
  ${WORKERS:+--workers "$WORKERS"} "$@" &
SW_PID=$!
trap 'kill -TERM $SW_PID 2>/dev/null' INT TERM
wait "$SW_PID" || true
