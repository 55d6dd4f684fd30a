#!/usr/bin/env bash
# Installs the packages as a user gets them: `pnpm pack` of every published package, then a
# fresh npm app outside the monorepo installs the tarballs and the drivers (the versions the
# workspace tests), and
#   - esm.mjs imports every entry point (`import` condition) and cjs.cjs requires every one
#     (`require` condition); each runs the quick start on its own build against the real
#     servers: SQLite -> OutboxRelay -> NATS JetStream -> InboxProcessor, exactly once, and a
#     PostgreSQL enqueue + claim when TXBOX_POSTGRES_URL is set;
#   - types.ts is type-checked under module nodenext and node16 (as .mts and .cts: the ES
#     module and the CommonJS declarations) and moduleResolution bundler;
#   - the bins run, txbox-migrations prints the installed adapters' DDL, and
#     txbox-conformance certifies SQLite from the installed packages.
# Any problem exits non-zero.
#
#   bash scripts/ci/packed-tarballs.sh        (TXBOX_*_URL from scripts/services.sh if unset)
#   TXBOX_KEEP_APP=1 ...                      keeps the temporary app and prints its path
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$(date +%s)

if [ -z "${TXBOX_NATS_URL:-}" ]; then
  eval "$(bash scripts/services.sh env --export)"
fi
[ -n "${TXBOX_NATS_URL:-}" ] || { echo '[packed-app] FAILED: TXBOX_NATS_URL is not set' >&2; exit 1; }

# shellcheck source=scripts/ci/packed-app.sh
source scripts/ci/packed-app.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/txbox-packed.XXXXXX")
if [ -n "${TXBOX_KEEP_APP:-}" ]; then
  trap 'say "kept $work/app"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

pack_packages "$work"
check_tarballs "$work"

# The drivers at the ranges the workspace tests with (the newest are newest-peers.sh's job).
spec() { node -p "const p = require('./$1/package.json'); '$2@' + (p.devDependencies ?? {})['$2']"; }
sqlite_version=$(node -p "require('./packages/sqlite/node_modules/better-sqlite3/package.json').version")
local_prebuild "$work" "$sqlite_version" || say "no workspace build of better-sqlite3 $sqlite_version: npm compiles it"
drivers=("better-sqlite3@$sqlite_version")
for dep in pg mysql2 mongodb ioredis @aws-sdk/client-dynamodb @aws-sdk/lib-dynamodb nats prom-client @types/pg @types/better-sqlite3; do
  drivers+=("$(spec packages/relay "$dep")")
done
drivers+=("$(spec packages/conformance vitest)" "$(spec . typescript)" "$(spec . @types/node)")
say "installing the tarballs with ${drivers[*]}"
make_app "$work" "${drivers[@]}"
unset npm_config_better_sqlite3_local_prebuilds

cp scripts/ci/packed-app/* "$work/app/"
cd "$work/app"
node esm.mjs
node cjs.cjs

cp types.ts types.mts
cp types.ts types.cts
# skipLibCheck is off so txbox's own declarations are checked with the app's strict options;
# errors inside other packages' declarations (nats 2 has some under strict) are theirs.
for config in nodenext node16 bundler; do
  if ! out=$(npx --no-install tsc -p "tsconfig.$config.json" --pretty false 2>&1); then
    ours=$(grep -E '^[^ ].*error TS[0-9]+' <<<"$out" | grep -vE '^node_modules/' || true)
    ours+=$(grep -E '^node_modules/@txbox/.*error TS[0-9]+' <<<"$out" || true)
    if [ -n "$ours" ] || ! grep -qE '^node_modules/.*error TS[0-9]+' <<<"$out"; then
      printf '%s\n' "$out" >&2
      die "types under tsconfig.$config.json"
    fi
  fi
done
say "types resolve under nodenext and node16 (ESM and CJS) and bundler"

for bin in txbox-relay txbox-conformance txbox-migrations; do
  out=$(npx --no-install "$bin" --help 2>&1) || { printf '%s\n' "$out" >&2; die "$bin --help"; }
done
# txbox-migrations (in @txbox/core) loads the adapter from the app's node_modules.
for store in sqlite postgres; do
  out=$(npx --no-install txbox-migrations print --store "$store" --down 2>&1) || { printf '%s\n' "$out" >&2; die "txbox-migrations print --store $store"; }
  grep -q "^-- txbox $store migration 0001_[a-z_]* (down)$" <<<"$out" || { printf '%s\n' "$out" >&2; die "txbox-migrations print --store $store: no down block of version 1"; }
done
npx --no-install txbox-conformance run --target sqlite --report "$work/sqlite-report.json" >"$work/conformance.log" 2>&1 ||
  { cat "$work/conformance.log"; die "txbox-conformance run --target sqlite from the installed packages"; }
say "bins run; sqlite $(grep -E '^conformance: ' "$work/conformance.log")"

cd "$root"
say "ok in $(($(date +%s) - started)) s"
