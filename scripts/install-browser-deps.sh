#!/usr/bin/env bash
# The browser test's tools: Debian's chromium, and playwright-core (pinned in tests/browser/package-lock.json)
# to drive it. playwright never downloads a browser of its own here. Safe to run again.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  echo "deps: installing Debian's chromium"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "deps: installing playwright-core"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "deps: chromium and playwright-core are installed"
