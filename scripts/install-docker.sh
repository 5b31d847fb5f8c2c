#!/usr/bin/env bash
# Installs what the compose test (tests/deploy.rs) needs from Debian: the Docker engine (docker.io),
# docker-compose and debootstrap (for the debian:bookworm-slim base image where no registry is reachable).
# The test starts the engine itself when none runs. Safe to run again.
set -euo pipefail

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
# The v2 plugin does as well as docker-compose 1.x; the test takes whichever is there.
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: docker, compose and debootstrap are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "deps: need root or sudo to install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null ||
  { echo "deps: apt-get install ${missing[*]} failed" >&2; exit 1; }
echo "deps: installed $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
