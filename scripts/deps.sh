#!/usr/bin/env bash
# Install what statewire needs to build, test and run, from Debian's
# packages. Idempotent; skips apt when everything is already there.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libhiredis-dev libev-dev libmsgpack-dev libjansson-dev libcriterion-dev
      libwslay-dev libhttp-parser-dev libssl-dev uthash-dev redis-server curl python3)
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
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
