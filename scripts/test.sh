#!/usr/bin/env bash
# Build with ASan/UBSan and run every test (unit + integration against a
# real redis-server started by the tests themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# Third-party protocol clients and playwright-core for tests/node (pinned
# in its lockfile); the browser is Debian's chromium, never a download.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
BUILD=${BUILD:-build-test}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Sanitize >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 900
# Every libFuzzer harness for a few seconds (clang build in build-fuzz):
# keeps them building and green; long runs are fuzz/README.md's.
bash fuzz/run.sh 5
# The load generator's smoke run against a real cluster.
bash bench/smoke.sh "$BUILD"
