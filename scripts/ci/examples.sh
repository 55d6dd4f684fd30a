#!/usr/bin/env bash
# The docs run as written: checks that every README link reaches what it names and that the
# README's conformance column matches docs/conformance, then runs the README's quick start and
# every example in examples/ against the real servers, and fails on the first that does not run
# (non-zero exit, or no answer within 2 minutes). Each example exits 0 only when its event was
# consumed exactly once.
#
#   bash scripts/ci/examples.sh [name...]   names: quickstart sqlite postgres mysql mongodb redis dynamodb
#
# Builds the packages the examples import (through turbo's cache). The servers' URLs come from
# TXBOX_*_URL, else from scripts/services.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if [ -z "${TXBOX_NATS_URL:-}" ]; then
  eval "$(bash scripts/services.sh env --export)"
fi

node scripts/ci/readme-links.mjs
node scripts/ci/readme-conformance.mjs

pnpm turbo run build --filter='./examples/*...' --output-logs=errors-only

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(quickstart sqlite postgres mysql mongodb redis dynamodb)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - $1) / 1000000 )) ms"; }

for name in "${names[@]}"; do
  file="examples/$name/$name.mjs"
  [ -f "$file" ] || { echo "[examples] no example '$name' ($file)" >&2; exit 2; }
  t=$(date +%s%N)
  # An empty working directory per example: the SQLite quick start creates its files there.
  mkdir "$work/$name"
  if ! (cd "$work/$name" && timeout 120 node "$root/$file"); then
    echo "[examples] FAILED: $file (see its output above)" >&2
    exit 1
  fi
  echo "[examples] ok: $name ($(elapsed "$t"))"
  if [ "$name" = quickstart ]; then
    t=$(date +%s%N)
    node scripts/ci/readme-quickstart.mjs
    echo "[examples] ok: README quick start ($(elapsed "$t"))"
  fi
done
echo "[examples] all ${#names[@]} ran in $(elapsed "$started")"
