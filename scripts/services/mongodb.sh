# shellcheck shell=bash
# scripts/services/mongodb.sh — sourced by scripts/services.sh: FerretDB (MongoDB wire
# protocol) through the small Go wrapper in tools/ferretdb, built once into the cache, on
# PostgreSQL (default: database ferretdb of postgres.sh's server) or SQLite.

MONGODB_PORT=${TXBOX_MONGODB_PORT:-27017}
FERRETDB_VERSION=1.24.2
FERRETDB_HANDLER=${TXBOX_FERRETDB_HANDLER:-postgresql}   # postgresql (default) or sqlite
FERRETDB_LOG_LEVEL=${TXBOX_FERRETDB_LOG_LEVEL:-warn}
# An existing PostgreSQL database for FerretDB (a private instance beside the shared one, as
# the ledger test starts); empty: database ferretdb of the postgres server started here.
FERRETDB_POSTGRESQL_URL=${TXBOX_FERRETDB_POSTGRESQL_URL:-}

mongodb_aliases() { echo mongo ferretdb; }
mongodb_port() { echo "$MONGODB_PORT"; }
mongodb_port_var() { echo TXBOX_MONGODB_PORT; }
mongodb_process() { echo "ferretdb-"; }
mongodb_env() { echo "${1}TXBOX_MONGODB_URL=mongodb://$HOST:$MONGODB_PORT/txbox"; }
mongodb_packages() { if [ "$FERRETDB_HANDLER" = postgresql ]; then postgres_packages; fi; }
mongodb_prepare() { build_ferretdb; }

ferretdb_needs_local_postgres() { [ "$FERRETDB_HANDLER" = postgresql ] && [ -z "$FERRETDB_POSTGRESQL_URL" ]; }
# FerretDB on the PostgreSQL handler needs the PostgreSQL server started here, ready and provisioned.
mongodb_needs() { if ferretdb_needs_local_postgres; then echo postgres; fi; }

find_go() {
  if command -v go >/dev/null; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
  else return 1
  fi
}

# Build the FerretDB wrapper (tools/ferretdb) once; the binary name carries a
# hash of the wrapper sources so that a change in them triggers a rebuild.
ferretdb_bin() {
  local h
  h=$(cat "$ROOT_DIR/tools/ferretdb/go.mod" "$ROOT_DIR/tools/ferretdb/go.sum" "$ROOT_DIR/tools/ferretdb/main.go" | sha256sum | cut -c1-10)
  echo "$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION-$h"
}

build_ferretdb() {
  local bin go t0 tmp blog
  bin=$(ferretdb_bin)
  [ -x "$bin" ] && return 0
  go=$(find_go) || { log "mongodb: Go (>= 1.21) is needed to build FerretDB and was not found"; return 1; }
  mkdir -p "$(dirname "$bin")"
  blog=$LOG_DIR/build-ferretdb.log
  tmp="$bin.tmp.$$"
  t0=$(now)
  log "mongodb: building FerretDB v$FERRETDB_VERSION wrapper -> $bin (log: $blog)"
  if ! (cd "$ROOT_DIR/tools/ferretdb" && CGO_ENABLED=0 "$go" build -mod=readonly -trimpath -ldflags=-s -o "$tmp" .) >"$blog" 2>&1; then
    rm -f "$tmp"
    log "mongodb: FerretDB build failed"
    tail_log "$blog"
    return 1
  fi
  mv -f "$tmp" "$bin"
  # drop binaries of older wrapper versions
  find "$(dirname "$bin")" -maxdepth 1 -name "ferretdb-*" ! -name "$(basename "$bin")" -type f -delete 2>/dev/null
  log "mongodb: FerretDB built in $(since "$t0")"
}

mongodb_ping() {
  local bin
  bin=$(ferretdb_bin)
  if [ -x "$bin" ]; then
    "$bin" ping -q -timeout 2s -uri "mongodb://$HOST:$MONGODB_PORT/" 2>/dev/null
  else
    tcp_open "$MONGODB_PORT"
  fi
}

mongodb_start() {
  local logf=$1 dir=$STATE_DIR/mongodb bin args
  bin=$(ferretdb_bin)
  [ -x "$bin" ] || { log "mongodb: FerretDB binary $bin missing"; return 1; }
  mkdir -p "$dir/sqlite"
  args=(serve -listen "$HOST:$MONGODB_PORT" -handler "$FERRETDB_HANDLER" -log-level "$FERRETDB_LOG_LEVEL")
  case $FERRETDB_HANDLER in
    sqlite) args+=(-sqlite-url "file:$dir/sqlite/") ;;
    postgresql) args+=(-postgresql-url "${FERRETDB_POSTGRESQL_URL:-postgres://txbox:txbox@$HOST:$POSTGRES_PORT/ferretdb}") ;;
    *) log "mongodb: TXBOX_FERRETDB_HANDLER must be sqlite or postgresql"; return 1 ;;
  esac
  spawn "$logf" "$bin" "${args[@]}"
}
