#!/usr/bin/env bash
# Installs the packed tarballs (as packed-tarballs.sh does) with the NEWEST published version
# of every driver and peer, then certifies each adapter through the installed
# `txbox-conformance` CLI against the real servers, and runs the vitest integration once.
# A peer range that excludes today's major fails here first, as the user's ERESOLVE.
#
#   bash scripts/ci/newest-peers.sh [--oldest] [target...]
#     targets: sqlite postgres mysql mongodb redis dynamodb (default all)
#     --oldest: the lowest version every peer range claims instead (e.g. pg 8.11.0)
#
# Majors that need a newer Node than the one running are held at the newest that supports
# it, and said so (engines are read from the registry, not guessed):
#   better-sqlite3 13 needs Node 22, vitest 5 Node 22.12, testcontainers 12 Node 22.22.
# Those majors were certified by running this script under Node 24.19 (PATH to another node;
# npm_config_nodedir to its headers if a driver must compile): every adapter passed with
# better-sqlite3 13.2.0, vitest 5.1.2 and testcontainers 12.2.0 installed (testcontainers is
# only loaded when a Docker engine is reachable, which it is not here).
# The workspace lockfile is not touched.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)

if [ -z "${TXBOX_NATS_URL:-}" ]; then
  eval "$(bash scripts/services.sh env --export)"
fi

# shellcheck source=scripts/ci/packed-app.sh
source scripts/ci/packed-app.sh

oldest=
mode=newest
if [ "${1:-}" = --oldest ]; then
  oldest=1
  mode=oldest
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sqlite postgres mysql mongodb redis dynamodb)

work=$(mktemp -d "${TMPDIR:-/tmp}/txbox-newest.XXXXXX")
if [ -n "${TXBOX_KEEP_APP:-}" ]; then
  trap 'say "kept $work/app"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

# Does this Node satisfy the engines range $1? Enough of semver for engines ranges:
# ">=a.b.c", "^a.b.c" and "||" alternatives (anything else is taken as satisfied).
node_satisfies() {
  node -e '
    const [major, minor, patch] = process.versions.node.split(".").map(Number)
    const ok = process.argv[1].split("||").some((part) => {
      const m = part.trim().match(/^(>=|\^)?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?/)
      if (!m) return true
      const cmp = major - Number(m[2]) || minor - Number(m[3] ?? 0) || patch - Number(m[4] ?? 0)
      return m[1] === "^" ? major === Number(m[2]) && cmp >= 0 : cmp >= 0
    })
    process.exit(ok ? 0 : 1)
  ' "$1"
}

# The registry's latest $1, or, when it needs a newer Node, the newest release of an older
# major that runs here (said in the log).
newest_for_this_node() {
  local name=$1 version engines
  version=$(npm view "$name" version)
  while engines=$(npm view "$name@$version" engines.node) && [ -n "$engines" ] && ! node_satisfies "$engines"; do
    say "$name@$version needs Node $engines (this is $(node --version)): trying the major before" >&2
    version=$(npm view "$name@<${version%%.*}" version --json | node -p '
      const versions = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8"))).filter((v) => !v.includes("-"))
      versions.sort((a, b) => a.localeCompare(b, "en", { numeric: true })).at(-1)')
  done
  echo "$name@$version"
}

# The lower bound that every published package's peer range for $1 accepts: the highest of
# their lower bounds (a range's first `^x.y.z` alternative is its lowest).
oldest_claimed() {
  node -e '
    const name = process.argv[1]
    const bounds = process.argv.slice(2).flatMap((file) => {
      const range = require(file).peerDependencies?.[name]
      const low = range?.match(/^\^(\d+\.\d+\.\d+)/)
      if (range && !low) throw new Error(`${file}: cannot read the lower bound of ${name} ${range}`)
      return low ? [low[1]] : []
    })
    if (bounds.length === 0) throw new Error(`no published package has a peer range for ${name}`)
    console.log(bounds.sort((a, b) => a.localeCompare(b, "en", { numeric: true })).at(-1))
  ' "$1" "$PWD"/packages/*/package.json
}

# The first release at or above that bound in its major (a bound such as 10.0.0 may never
# have been published).
oldest_release() {
  local name=$1 bound
  bound=$(oldest_claimed "$name")
  (cd "$work" && npm view "$name@>=$bound <$((${bound%%.*} + 1))" version --json) | node -p '
    const versions = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8"))).filter((v) => !v.includes("-"))
    process.argv[1] + "@" + versions.sort((a, b) => a.localeCompare(b, "en", { numeric: true }))[0]' "$name"
}

pack_packages "$work"
specs=()
for dep in better-sqlite3 pg mysql2 mongodb ioredis @aws-sdk/client-dynamodb @aws-sdk/lib-dynamodb nats prom-client vitest testcontainers; do
  # Outside the repository, whose .npmrc has pnpm-only settings npm warns about.
  if [ -n "$oldest" ]; then
    specs+=("$(oldest_release "$dep")")
  else
    specs+=("$(cd "$work" && newest_for_this_node "$dep")")
  fi
done
sqlite_version=${specs[0]#better-sqlite3@}
if ! local_prebuild "$work" "$sqlite_version"; then
  # No prebuilt better-sqlite3 can be downloaded here: skip the attempt, compile at once.
  export npm_config_build_from_source=true
fi
say "installing the tarballs with ${specs[*]}"
make_app "$work" "${specs[@]}"
unset npm_config_build_from_source npm_config_better_sqlite3_local_prebuilds
(cd "$work/app" && npm ls --depth=0)

cd "$work/app"
failed=()
for target in "${targets[@]}"; do
  t=$(date +%s)
  if npx --no-install txbox-conformance run --target "$target" --report "$work/$target.json" >"$work/$target.log" 2>&1; then
    say "$target $(grep -E '^conformance: ' "$work/$target.log") ($(($(date +%s) - t)) s)"
  else
    cat "$work/$target.log"
    say "$target: FAILED with the $mode drivers ($(($(date +%s) - t)) s)"
    failed+=("$target")
  fi
done

# The vitest integration with the newest vitest this Node runs: the SQLite target as tests.
cat >conformance.test.mjs <<'JS'
import { describeConformance } from '@txbox/conformance/vitest'
import { createConformanceTarget } from '@txbox/sqlite/conformance'

describeConformance(await createConformanceTarget())
JS
if NO_COLOR=1 npx --no-install vitest run conformance.test.mjs >"$work/vitest.log" 2>&1; then
  say "vitest $(npx --no-install vitest --version | cut -d' ' -f1):$(grep -E '^ +Tests ' "$work/vitest.log" | tail -n 1)"
else
  cat "$work/vitest.log"
  failed+=(vitest)
fi

[ ${#failed[@]} -eq 0 ] || die "with the $mode drivers: ${failed[*]}"
say "$mode peers ok in $(($(date +%s) - started)) s"
