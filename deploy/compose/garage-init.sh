#!/bin/sh
# One-shot set-up of the compose Garage node: a role in the layout, the `ladder` bucket, its key and its
# website endpoint. Idempotent: it runs on every `docker compose up`.
set -eu
G="garage -c /etc/garage.toml"
until $G status >/dev/null 2>&1; do sleep 1; done
NODE=$($G node id -q | cut -d@ -f1)
if $G layout show 2>/dev/null | grep -q "No nodes currently have a role"; then
  $G layout assign -z dc1 -c 10G "$NODE"
  $G layout apply --version 1
fi
$G bucket info ladder >/dev/null 2>&1 || $G bucket create ladder
$G key info "$AWS_ACCESS_KEY_ID" >/dev/null 2>&1 ||
  $G key import --yes -n ladder "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
$G bucket allow --read --write --owner ladder --key "$AWS_ACCESS_KEY_ID"
$G bucket website --allow ladder
echo "garage-init: bucket ladder ready"
