#!/usr/bin/env bash
# Installs what ladder needs to build, run and test from Debian's packages, only where it is missing: libsrt
# (the SRT library ingest links, with its headers and pkg-config) and the tools the tests and the demo run.
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
# Building: libsrt 1.5 found through pkg-config (the OpenSSL flavour: AES-CTR, as ffmpeg's libsrt).
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
srt_found() { command -v pkg-config >/dev/null 2>&1 && pkg-config --atleast-version=1.5 srt 2>/dev/null; }
srt_found || missing+=(libsrt-openssl-dev)
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: libsrt, ffmpeg, nats-server and srt-tools are installed"
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
srt_found || { echo "deps: libsrt 1.5 is still not found by pkg-config after installing" >&2; exit 1; }
echo "deps: installed $packages"
