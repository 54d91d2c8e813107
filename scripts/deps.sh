#!/usr/bin/env bash
# Install what statewire needs to build, test and run, from Debian's
# packages. Idempotent; skips apt when everything is already there.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libhiredis-dev libev-dev libmsgpack-dev libjansson-dev libcriterion-dev
      libwslay-dev libhttp-parser-dev libssl-dev uthash-dev libjemalloc-dev libjwt-dev
      redis-server curl python3
      chromium nginx clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the protocol tests with third-party clients (npm: ws,
# eventsource); Debian's nodejs when the machine has no node at all.
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # chromium runs the browser tests (tests/node/browser.test.mjs), nginx
  # the load-balancer test (tests/node/nginx.test.mjs) with its own config
  # and prefix: the system nginx service is not needed, so no service is
  # started during the install (policy-rc.d 101), unless the machine
  # already has a policy.
  POLICY=/usr/sbin/policy-rc.d
  OWN_POLICY=""
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    OWN_POLICY=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" || rc=$?
  [ -z "$OWN_POLICY" ] || $SUDO rm -f "$POLICY"
  exit "$rc"
fi
