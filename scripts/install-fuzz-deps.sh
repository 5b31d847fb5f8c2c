#!/usr/bin/env bash
# Installs what `make fuzz` and `make fuzz-ci` need beyond `make deps`: cargo-fuzz, from crates.io, if it is
# missing. cargo fuzz wants a nightly compiler; fuzz/run.sh uses nightly where rustup has it and otherwise the
# stable one with RUSTC_BOOTSTRAP=1 (no toolchain is downloaded: CI machines have only the stable one).
# Safe to run again.
set -euo pipefail

if cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-deps: $(cargo fuzz --version) is installed"
else
  echo "fuzz-deps: installing cargo-fuzz (about 2 minutes)"
  cargo install cargo-fuzz --locked --quiet
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz-deps: fuzzing with the nightly toolchain"
else
  echo "fuzz-deps: no nightly toolchain: fuzzing with stable and RUSTC_BOOTSTRAP=1"
fi
