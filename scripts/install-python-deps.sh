#!/usr/bin/env bash
# The Python tools the tests use, in a virtualenv under target/: the `m3u8` package, an HLS parser we did not
# write, checks every playlist the tests fetch (tests/hls/parse_playlist.py). Safe to run again.
set -euo pipefail

VENV="${LADDER_TEST_VENV:-target/hls-venv}"
if "$VENV/bin/python" -c 'import m3u8' 2>/dev/null; then
  echo "deps: python m3u8 is installed ($VENV)"
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'm3u8==6.0.0'
echo "deps: installed python m3u8 into $VENV"
