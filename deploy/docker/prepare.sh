#!/usr/bin/env bash
# Prepares the offline images of deploy/compose/docker-compose.offline.yml on a machine with Docker but no
# image registry:
#   - debian:bookworm-slim, made with debootstrap from the Debian archive this machine uses (its apt sources
#     and settings go into the image, so apt works in the builds as it does here), when it is missing;
#   - the build contexts of deploy/docker/ladder and deploy/docker/garage: the `ladder` binary given (stripped;
#     default target/release/ladder) and the `garage` binary (`cargo install garage`; GARAGE_BIN to choose).
# Then: docker-compose -f deploy/compose/docker-compose.yml -f deploy/compose/docker-compose.offline.yml up -d --build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ladder=${1:-$here/../../target/release/ladder}
garage=${GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
say() { echo "prepare: $*"; }
fail() { echo "prepare: $*" >&2; exit 1; }

[ -x "$ladder" ] || fail "no ladder binary at $ladder (cargo build --release --bin ladder)"
[ -x "$garage" ] || fail "no garage binary at $garage (cargo install garage, or GARAGE_BIN=...)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (start dockerd)"

if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  say "debian:bookworm-slim is there"
else
  command -v debootstrap >/dev/null || fail "debian:bookworm-slim is missing and debootstrap is not installed"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  say "making debian:bookworm-slim with debootstrap (about a minute)"
  mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; fail "debootstrap failed (log above)"; }
  rm -f "$root.log"
  # The host's archive and apt settings (a mirror, a proxy, a snapshot's validity), as the builds will need.
  if [ -d /etc/apt/sources.list.d ] && grep -q bookworm /etc/os-release 2>/dev/null; then
    cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
    find "$root/etc/apt/sources.list.d" -name '*.disabled*' -delete
    [ -s /etc/apt/sources.list ] && cp /etc/apt/sources.list "$root/etc/apt/sources.list" ||
      { ls "$root"/etc/apt/sources.list.d/* >/dev/null 2>&1 && rm -f "$root/etc/apt/sources.list"; }
    for conf in /etc/apt/apt.conf.d/*; do
      case "$(basename "$conf")" in docker-*|20packagekit|50appstream) ;; *) cp "$conf" "$root/etc/apt/apt.conf.d/" ;; esac
    done
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - debian:bookworm-slim >/dev/null
  say "made debian:bookworm-slim"
fi

strip -o "$here/ladder/ladder" "$ladder"
cp "$garage" "$here/garage/garage"
say "build contexts ready: ladder $(du -h "$here/ladder/ladder" | cut -f1), garage $(du -h "$here/garage/garage" | cut -f1)"
