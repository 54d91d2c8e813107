#!/usr/bin/env bash
# Run each libFuzzer harness for a while (fuzz/README.md).
#
#   bash fuzz/run.sh [--merge] [SECONDS] [HARNESS...]
#
# SECONDS per harness (default 10); HARNESS: http ws msg mpjson resp (or
# fuzz_http, ...), default all. Builds build-fuzz (clang, -DSW_FUZZ=ON)
# when needed. Each harness runs on its working corpus build-fuzz/corpus/
# <harness> (new inputs go there) plus fuzz/corpus/<harness>, which is only
# read; with --merge, the inputs that add coverage are merged into
# fuzz/corpus/<harness> afterwards. Crash inputs go to build-fuzz/
# artifacts/<harness>/, logs to build-fuzz/logs/. Prints executions per
# harness; exits 1 when any harness crashed or failed to run.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(fuzz_http fuzz_ws fuzz_msg fuzz_mpjson fuzz_resp)
MERGE=0
SECS=10
HARNESSES=()
for a in "$@"; do
  case "$a" in
    --merge) MERGE=1 ;;
    -h | --help)
      sed -n '2,13p' "$0"
      exit 0
      ;;
    '' | *[!0-9]*) HARNESSES+=("fuzz_${a#fuzz_}") ;;
    *) SECS=$a ;;
  esac
done
((${#HARNESSES[@]})) || HARNESSES=("${ALL[@]}")
for h in "${HARNESSES[@]}"; do
  [[ " ${ALL[*]} " == *" $h "* ]] || {
    echo "fuzz: unknown harness ${h#fuzz_} (known: ${ALL[*]#fuzz_})" >&2
    exit 2
  }
done

BUILD=${FUZZ_BUILD:-build-fuzz}
command -v clang >/dev/null || {
  echo "fuzz: clang not found (bash scripts/deps.sh installs clang, libclang-rt-14-dev)" >&2
  exit 2
}
mkdir -p "$BUILD/logs"
if ! { cmake -S . -B "$BUILD" -DSW_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Fuzz &&
  cmake --build "$BUILD" -j2 --target "${HARNESSES[@]}"; } >"$BUILD/logs/build.log" 2>&1; then
  tail -n 40 "$BUILD/logs/build.log" >&2
  echo "fuzz: build failed (log: $BUILD/logs/build.log)" >&2
  exit 1
fi

failed=()
for h in "${HARNESSES[@]}"; do
  work="$BUILD/corpus/$h"
  art="$BUILD/artifacts/$h"
  log="$BUILD/logs/$h.log"
  mkdir -p "$work" "$art"
  dict=()
  [ ! -f "fuzz/$h.dict" ] || dict=("-dict=fuzz/$h.dict")
  rc=0
  # -timeout over the 30 s the connection harnesses move their clock
  # within an input (conn_driver.h).
  "$BUILD/fuzz/$h" -max_total_time="$SECS" -timeout=60 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$work" "fuzz/corpus/$h" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  if ((rc != 0)); then
    grep -E 'ERROR|SUMMARY|^    #[0-9]+ |^fuzz_|^conn_driver|Test unit written' "$log" | head -n 40 >&2 || true
    echo "fuzz: $h FAILED (exit $rc; log: $log; inputs: $art/)" >&2
    failed+=("$h")
    continue
  fi
  printf '%-12s %10s executions %8s exec/s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "$cov"
  if ((MERGE)); then
    "$BUILD/fuzz/$h" -merge=1 -max_len=4096 "fuzz/corpus/$h" "$work" >"$BUILD/logs/$h.merge.log" 2>&1
    echo "             merged: $(grep -oE '[0-9]+ new files with [0-9]+ new features' "$BUILD/logs/$h.merge.log" || echo '?')"
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
