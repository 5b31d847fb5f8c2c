#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's `prometheus` package for the tests that scrape every service
# and check the alert rules (tests/operate.rs). Safe to run again.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  echo "deps: prometheus and promtool are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "deps: need root or sudo to install prometheus (apt-get install prometheus)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed" >&2; exit 1; }
# The package's postinst starts a prometheus service where systemd runs; the tests start their own.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
  { echo "deps: apt-get install prometheus failed" >&2; exit 1; }
command -v promtool >/dev/null 2>&1 || { echo "deps: promtool is still missing after installing" >&2; exit 1; }
echo "deps: installed prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
