#!/usr/bin/env bash
# The Python tools the tests use, in a virtualenv under target/: the `m3u8` package, an HLS parser we did not
# write, checks every playlist the tests fetch (tests/hls/parse_playlist.py), and `python-hcl2` parses the
# Nomad jobs (tests/deploy/check_nomad.py). Safe to run again.
set -euo pipefail

VENV="${LADDER_TEST_VENV:-target/hls-venv}"
if "$VENV/bin/python" -c 'import m3u8, hcl2' 2>/dev/null; then
  echo "deps: python m3u8 and python-hcl2 are installed ($VENV)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'm3u8==6.0.0' 'python-hcl2==8.1.4'
echo "deps: installed python m3u8 and python-hcl2 into $VENV"
