#!/usr/bin/env bash
# Installs Garage, the S3 server the tests run the storage suite and an end-to-end test against, with
# `cargo install` (a release build: about 10 minutes on 2 cores, once per machine; the binary stays in
# cargo's bin directory). Safe to run again.
set -euo pipefail

VERSION=2.5.0
BIN="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
for candidate in "${GARAGE:-}" "$(command -v garage || true)" "$BIN"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version 2>/dev/null | grep -q "$VERSION"; then
    echo "deps: garage $VERSION is installed ($candidate)"
    exit 0
  fi
done
echo "deps: building garage $VERSION with cargo install (about 10 minutes, once per machine)"
cargo install garage --version "$VERSION" --locked --quiet
"$BIN" --version
