# Sourced by packed-tarballs.sh and newest-peers.sh: packs every published package as npm
# would publish it and installs the tarballs into a fresh npm app outside the monorepo.
#
#   pack_packages DIR                    builds (turbo cache) and packs into DIR/tarballs
#   make_app DIR SPEC...                 DIR/app: npm install of the tarballs + SPEC...
#   local_prebuild DIR VERSION           better-sqlite3 VERSION's binary from the workspace,
#                                        offered to prebuild-install (no compile, no download)
#
# Expects to be sourced from the repository root with `set -euo pipefail`.

PUBLISHED=(core conformance sqlite postgres mysql mongodb redis dynamodb relay)

say() { printf '[packed-app] %s\n' "$*"; }
die() {
  printf '[packed-app] FAILED: %s\n' "$*" >&2
  exit 1
}

pack_packages() {
  local dir=$1
  pnpm turbo run build --filter='./packages/*' --output-logs=errors-only >/dev/null
  mkdir -p "$dir/tarballs"
  local name
  for name in "${PUBLISHED[@]}"; do
    # pnpm pack, as `pnpm publish` would: workspace:^ ranges become real versions.
    (cd "packages/$name" && pnpm pack --pack-destination "$dir/tarballs" >/dev/null) ||
      die "pnpm pack packages/$name"
  done
  local count
  count=$(find "$dir/tarballs" -name 'txbox-*.tgz' | wc -l)
  [ "$count" -eq "${#PUBLISHED[@]}" ] || die "expected ${#PUBLISHED[@]} tarballs, got $count"
}

# What no tarball may carry: build info, source maps (their sources are not shipped),
# workspace: ranges; and what each must carry: LICENSE, README, both builds.
check_tarballs() {
  local dir=$1 tgz list manifest
  for tgz in "$dir"/tarballs/*.tgz; do
    list=$(tar tzf "$tgz")
    grep -qx 'package/LICENSE' <<<"$list" || die "$(basename "$tgz") has no LICENSE"
    grep -qx 'package/README.md' <<<"$list" || die "$(basename "$tgz") has no README.md"
    grep -qx 'package/dist/index.cjs' <<<"$list" || die "$(basename "$tgz") has no CommonJS build"
    grep -qx 'package/dist/index.d.cts' <<<"$list" || die "$(basename "$tgz") has no CommonJS types"
    if grep -E '\.tsbuildinfo$|\.map$|^package/src/' <<<"$list"; then
      die "$(basename "$tgz") ships build info, source maps or sources (listed above)"
    fi
    manifest=$(tar xzf "$tgz" -O package/package.json)
    if grep -nE '"workspace:|example\.invalid' <<<"$manifest"; then
      die "$(basename "$tgz") package.json has a workspace: range or a placeholder URL (above)"
    fi
  done
  say "tarballs: LICENSE, README, ESM + CJS builds; no build info, maps or workspace ranges"
}

local_prebuild() {
  local dir=$1 version=$2 built abi
  built=$(ls -d node_modules/.pnpm/better-sqlite3@"$version"/node_modules/better-sqlite3/build/Release 2>/dev/null || true)
  [ -f "$built/better_sqlite3.node" ] || return 1
  abi=$(node -p 'process.versions.modules')
  mkdir -p "$dir/prebuilds"
  tar czf "$dir/prebuilds/better-sqlite3-v$version-node-v$abi-$(node -p 'process.platform')-$(node -p 'process.arch').tar.gz" \
    -C "$built/../.." build/Release/better_sqlite3.node
  # prebuild-install looks for <name>-v<version>-node-v<abi>-<platform>-<arch>.tar.gz there.
  export npm_config_better_sqlite3_local_prebuilds="$dir/prebuilds"
}

make_app() {
  local dir=$1
  shift
  mkdir -p "$dir/app"
  cat >"$dir/app/package.json" <<'JSON'
{ "name": "txbox-packed-app", "version": "1.0.0", "private": true, "license": "MIT" }
JSON
  # No .npmrc of the monorepo applies here: this is a user's project.
  (cd "$dir/app" && npm install --no-audit --no-fund --loglevel=error "$dir"/tarballs/*.tgz "$@") ||
    die "npm install of the tarballs and ${*}"
  # Every later install must still resolve (the ERESOLVE a too-narrow peer range causes).
  (cd "$dir/app" && npm install --no-audit --no-fund --loglevel=error) || die "a second npm install in the app"
}
