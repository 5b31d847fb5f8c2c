#!/usr/bin/env bash
# Installs what ladder needs at run and test time from Debian's packages, only where it is missing.
# Used by `make demo` and `make test`; safe to run again.
set -euo pipefail

# command -> Debian package
declare -A NEED=(
  [ffmpeg]=ffmpeg
  [ffprobe]=ffmpeg
  [nats-server]=nats-server
  [srt-live-transmit]=srt-tools
)

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: ffmpeg, nats-server and srt-tools are installed"
  exit 0
fi
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo "deps: installing Debian packages: $packages"

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "deps: need root or sudo to install: $packages" >&2
  echo "deps: install them yourself (apt-get install $packages) and run this again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: no apt-get here; install these yourself: $packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "deps: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null ||
  { echo "deps: apt-get install $packages failed" >&2; exit 1; }

for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "deps: $cmd is still missing after installing" >&2; exit 1; }
done
echo "deps: installed $packages"
