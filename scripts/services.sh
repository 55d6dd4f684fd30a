#!/usr/bin/env bash
# scripts/services.sh — install (if missing) and run, on loopback, the real
# servers that txbox integration tests use: PostgreSQL, MariaDB, Redis,
# NATS (JetStream), FerretDB (MongoDB wire protocol) and DynamoDB Local.
#
#   scripts/services.sh up     [names...]   install + start + wait until ready
#   scripts/services.sh down   [names...]   stop (idempotent)
#   scripts/services.sh status [names...]   one line per server; non-zero if any is down
#   scripts/services.sh env    [--export]   TXBOX_*_URL lines for the tests
#
# Names: postgres mariadb redis nats mongodb dynamodb (aliases: pg, postgresql,
# mysql, ferretdb, mongo, dynamo, ddb), and redis-cluster (three processes, in
# scripts/services/redis-cluster.sh). Default: all.
#
# No init system is assumed: daemons are started directly, detached with
# setsid, and tracked by pid files. See docs/SERVICES.md.
set -uo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
STATE_DIR=${TXBOX_SERVICES_DIR:-$HOME/.cache/txbox/services}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/txbox
LOG_DIR=$STATE_DIR/logs
RUN_DIR=$STATE_DIR/run
TIMEOUT=${TXBOX_SERVICES_TIMEOUT:-120}   # seconds to wait for each server to be ready
HUNG_GRACE=${TXBOX_SERVICES_HUNG_GRACE:-15}   # a running server silent this long is restarted

POSTGRES_PORT=${TXBOX_POSTGRES_PORT:-5432}
MYSQL_PORT=${TXBOX_MYSQL_PORT:-3306}
REDIS_PORT=${TXBOX_REDIS_PORT:-6379}
NATS_PORT=${TXBOX_NATS_PORT:-4222}
NATS_MONITOR_PORT=${TXBOX_NATS_MONITOR_PORT:-8222}
MONGODB_PORT=${TXBOX_MONGODB_PORT:-27017}
DYNAMODB_PORT=${TXBOX_DYNAMODB_PORT:-8000}

FERRETDB_VERSION=1.24.2
FERRETDB_HANDLER=${TXBOX_FERRETDB_HANDLER:-postgresql}   # postgresql (default) or sqlite
FERRETDB_LOG_LEVEL=${TXBOX_FERRETDB_LOG_LEVEL:-warn}
# An existing PostgreSQL database for FerretDB (a private instance beside the shared one, as
# the ledger test starts); empty: database ferretdb of the postgres server started here.
FERRETDB_POSTGRESQL_URL=${TXBOX_FERRETDB_POSTGRESQL_URL:-}
# DynamoDB Local keeps its tables in memory unless given a directory (a restart then keeps them).
DYNAMODB_DB_PATH=${TXBOX_DYNAMODB_DB_PATH:-}
DYNAMODB_LOCAL_VERSION=$(sed -n 's:.*<dynamodb-local.version>\(.*\)</dynamodb-local.version>.*:\1:p' \
  "$ROOT_DIR/tools/dynamodb-local/pom.xml" 2>/dev/null)

ALL_SERVICES=(postgres mariadb redis nats mongodb dynamodb)
# Services of several processes each, in their own file under scripts/services/.
ALL_CLUSTERS=(redis-cluster)
HOST=127.0.0.1
# shellcheck source=services/redis-cluster.sh
. "$ROOT_DIR/scripts/services/redis-cluster.sh"

# ---------------------------------------------------------------- helpers ---

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
is_root() { [ "$(id -u)" = 0 ]; }

port_var() {
  case $1 in
    mariadb) echo TXBOX_MYSQL_PORT ;;
    *) echo "TXBOX_${1^^}_PORT" ;;
  esac
}

port_of() {
  case $1 in
    postgres) echo "$POSTGRES_PORT" ;;
    mariadb) echo "$MYSQL_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    nats) echo "$NATS_PORT" ;;
    mongodb) echo "$MONGODB_PORT" ;;
    dynamodb) echo "$DYNAMODB_PORT" ;;
  esac
}

canonical_name() {
  case ${1,,} in
    postgres | postgresql | pg) echo postgres ;;
    mariadb | mysql) echo mariadb ;;
    redis) echo redis ;;
    nats | nats-server | jetstream) echo nats ;;
    mongodb | mongo | ferretdb) echo mongodb ;;
    dynamodb | dynamo | ddb | dynamodb-local) echo dynamodb ;;
    redis-cluster | rediscluster | redis_cluster) echo redis-cluster ;;
    *) return 1 ;;
  esac
}

# parse_names NAME... -> sets SERVICES and CLUSTERS (canonical, de-duplicated, in
# ALL_SERVICES / ALL_CLUSTERS order)
parse_names() {
  local want=() n c s
  if [ $# -eq 0 ]; then
    SERVICES=("${ALL_SERVICES[@]}")
    CLUSTERS=("${ALL_CLUSTERS[@]}")
    return
  fi
  for n in "$@"; do
    c=$(canonical_name "$n") || die "unknown server '$n' (known: ${ALL_SERVICES[*]} ${ALL_CLUSTERS[*]})"
    want+=("$c")
  done
  SERVICES=()
  CLUSTERS=()
  for s in "${ALL_SERVICES[@]}" "${ALL_CLUSTERS[@]}"; do
    for c in "${want[@]}"; do
      if [ "$c" = "$s" ]; then
        if [[ " ${ALL_CLUSTERS[*]} " == *" $s "* ]]; then CLUSTERS+=("$s"); else SERVICES+=("$s"); fi
        break
      fi
    done
  done
}

log_file() { echo "$LOG_DIR/$1.log"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

# Pattern that /proc/PID/cmdline must contain for the pid to be ours (guards
# against a pid file that survived a reboot and now names another process).
cmd_pattern() {
  case $1 in
    postgres) echo "bin/postgres -D" ;;
    mariadb) echo mariadbd ;;
    redis) echo redis-server ;;
    nats) echo nats-server ;;
    mongodb) echo "ferretdb-" ;;
    dynamodb) echo LoopbackServerRunner ;;
  esac
}

# pid_alive PID PATTERN: process exists, is not a zombie, and its cmdline matches.
pid_alive() {
  local pid=$1 pattern=$2 stat cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$pattern"* ]]
}

# running_pid NAME: prints the pid and succeeds if NAME's process is alive.
running_pid() {
  local pf pid
  pf=$(pid_file "$1")
  [ -s "$pf" ] || return 1
  pid=$(head -n1 "$pf" 2>/dev/null)
  pid_alive "$pid" "$(cmd_pattern "$1")" || return 1
  echo "$pid"
}

# tcp_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# spawn LOGFILE CMD...: start CMD detached (new session, stdin from /dev/null,
# stdout+stderr appended to LOGFILE, no other inherited file descriptors, so
# that neither a CI runner waiting on our pipes nor our lock is held by it).
# Prints the pid of CMD.
spawn() {
  local logf=$1
  shift
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [[ $fd =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    cd "$STATE_DIR" || exit 1   # do not keep the caller's directory (a CI clone) busy
    exec setsid "$@" </dev/null >>"$logf" 2>&1
  ) &
  echo $!
}

# rotate LOGFILE: keep the previous run's log as LOGFILE.1.
rotate() {
  if [ -s "$1" ]; then mv -f "$1" "$1.1"; fi
  : >"$1"
}

tail_log() {
  local f=$1
  [ -s "$f" ] || return 0
  printf '[services] ---- last lines of %s ----\n' "$f" >&2
  tail -n 25 "$f" | sed 's/^/    /' >&2
  printf '[services] ----\n' >&2
}

# ------------------------------------------------------------ installation ---

APT_UPDATED=0
apt_install() {
  [ $# -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "apt-get not found; install manually: $*"
  local sudo=() t0 policy_created=0 rc=0
  if ! is_root; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install: $*"
    sudo=(sudo -n)
  fi
  t0=$(now)
  # Keep package maintainer scripts from starting the distribution's own
  # instances (they would take our ports); restored right after.
  if is_root && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  local alog=$LOG_DIR/apt.log
  : >"$alog"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update (log: $alog)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$alog" 2>&1 || rc=$?
    APT_UPDATED=1
  fi
  if [ "$rc" = 0 ]; then
    log "apt-get install $* (log: $alog)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >>"$alog" 2>&1 || rc=$?
  fi
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$rc" != 0 ]; then
    log "apt-get failed (exit $rc) for: $*"
    tail_log "$alog"
    return "$rc"
  fi
  log "apt-get done in $(since "$t0")"
}

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

find_go() {
  if command -v go >/dev/null; then command -v go
  elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
  else return 1
  fi
}

# packages_needed SERVICE...: Debian packages to install for the binaries that are missing.
packages_needed() {
  local s pkgs=()
  for s in "$@"; do
    case $s in
      postgres) pg_bin_dir >/dev/null || pkgs+=(postgresql) ;;
      mariadb) command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || pkgs+=(mariadb-server mariadb-client) ;;
      redis | redis-cluster) [ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || pkgs+=(redis-server) ;;
      nats) command -v nats-server >/dev/null || pkgs+=(nats-server) ;;
      mongodb) [ "$FERRETDB_HANDLER" = postgresql ] && { pg_bin_dir >/dev/null || pkgs+=(postgresql); } ;;
      dynamodb)
        command -v curl >/dev/null || pkgs+=(curl)
        command -v javac >/dev/null || pkgs+=(openjdk-17-jdk-headless)
        command -v mvn >/dev/null || pkgs+=(maven)
        ;;
    esac
    if [ "$s" = nats ]; then command -v curl >/dev/null || pkgs+=(curl); fi
  done
  printf '%s\n' "${pkgs[@]}" | awk 'NF && !seen[$0]++'
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

# DynamoDB Local jars (+ sqlite4java native library) resolved by Maven from
# tools/dynamodb-local/pom.xml, and the loopback launcher compiled against them.
dynamodb_home() {
  local h
  h=$(cat "$ROOT_DIR/tools/dynamodb-local/pom.xml" "$ROOT_DIR/tools/dynamodb-local/LoopbackServerRunner.java" | sha256sum | cut -c1-10)
  echo "$CACHE_DIR/dynamodb-local/$DYNAMODB_LOCAL_VERSION-$h"
}

resolve_dynamodb() {
  local home t0 tmp blog
  home=$(dynamodb_home)
  [ -f "$home/.complete" ] && return 0
  command -v mvn >/dev/null || { log "dynamodb: mvn not found"; return 1; }
  command -v javac >/dev/null || { log "dynamodb: javac not found"; return 1; }
  blog=$LOG_DIR/build-dynamodb.log
  tmp="$home.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  t0=$(now)
  log "dynamodb: resolving DynamoDB Local $DYNAMODB_LOCAL_VERSION with Maven -> $home (log: $blog)"
  if ! mvn -B -q -ntp -Dstyle.color=never -f "$ROOT_DIR/tools/dynamodb-local/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$tmp/lib" >"$blog" 2>&1; then
    rm -rf "$tmp"
    log "dynamodb: Maven resolution failed"
    tail_log "$blog"
    return 1
  fi
  if ! ls "$tmp"/lib/libsqlite4java-linux-amd64*.so >/dev/null 2>&1; then
    rm -rf "$tmp"
    log "dynamodb: sqlite4java native library (libsqlite4java-linux-amd64) was not resolved"
    return 1
  fi
  if ! javac -nowarn -cp "$tmp/lib/*" -d "$tmp/classes" "$ROOT_DIR/tools/dynamodb-local/LoopbackServerRunner.java" >>"$blog" 2>&1; then
    rm -rf "$tmp"
    log "dynamodb: compiling LoopbackServerRunner failed"
    tail_log "$blog"
    return 1
  fi
  touch "$tmp/.complete"
  rm -rf "$home"
  mv "$tmp" "$home"
  # drop other versions, except one a running DynamoDB Local still loads classes from
  local old pid cmd=""
  pid=$(running_pid dynamodb) && cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
  for old in "$(dirname "$home")"/*; do
    [ "$old" = "$home" ] || [[ $cmd == *"$old/"* ]] || rm -rf "$old"
  done
  log "dynamodb: resolved in $(since "$t0")"
}

# ------------------------------------------------------------------ checks ---

# ping_SERVICE: one quick, real protocol round trip; success = ready.
ping_postgres() {
  local bin
  bin=$(pg_bin_dir) || return 1
  PGCONNECT_TIMEOUT=2 timeout 5 "$bin/pg_isready" -q -h "$HOST" -p "$POSTGRES_PORT" -d postgres
}
ping_mariadb() {
  # as the OS user over our socket; for a server we did not just start, as txbox over TCP
  if [ -S "$STATE_DIR/mariadb/run/mariadb.sock" ]; then
    timeout 5 mariadb-admin --no-defaults --protocol=socket --socket="$STATE_DIR/mariadb/run/mariadb.sock" \
      --connect-timeout=2 -u "$(id -un)" ping >/dev/null 2>&1 && return 0
  fi
  timeout 5 mariadb-admin --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" \
    --connect-timeout=2 -utxbox -ptxbox ping >/dev/null 2>&1
}
ping_redis() { [ "$(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
ping_nats() {
  curl -fsS --max-time 2 "http://$HOST:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" 2>/dev/null | grep -q '"ok"' || return 1
  # NATS protocol: the server greets with INFO; PING must be answered by PONG
  timeout 3 bash -c '
    exec 3<>/dev/tcp/'"$HOST"'/'"$NATS_PORT"' || exit 1
    IFS= read -r line <&3; [[ $line == INFO* ]] || exit 1
    printf "CONNECT {\"verbose\":false}\r\nPING\r\n" >&3
    while IFS= read -r line <&3; do [[ $line == PONG* ]] && exit 0; [[ $line == -ERR* ]] && exit 1; done
    exit 1' 2>/dev/null
}
ping_mongodb() {
  local bin
  bin=$(ferretdb_bin)
  if [ -x "$bin" ]; then
    "$bin" ping -q -timeout 2s -uri "mongodb://$HOST:$MONGODB_PORT/" 2>/dev/null
  else
    tcp_open "$MONGODB_PORT"
  fi
}
ping_dynamodb() {
  curl -sS --max-time 3 -X POST "http://$HOST:$DYNAMODB_PORT/" \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=txbox/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=txbox' \
    -d '{}' 2>/dev/null | grep -q '"TableNames"'
}

# ----------------------------------------------------------------- postgres ---

PG_SUPERUSER_PASSWORD=postgres

# Sets PG_BIN, PG_BASE (state dir), PG_HOME (where data/ and run/ really are),
# PG_USER (the OS user running the server), PG_DATA.
pg_setup_paths() {
  PG_BIN=$(pg_bin_dir) || return 1
  PG_BASE=$STATE_DIR/postgres
  PG_USER=$(id -un)
  PG_HOME=$PG_BASE
  mkdir -p "$PG_BASE"
  if is_root; then
    # PostgreSQL refuses to run as root: run it as the Debian 'postgres' user.
    PG_USER=postgres
    id postgres >/dev/null 2>&1 || { log "postgres: OS user 'postgres' missing"; return 1; }
    chown postgres: "$PG_BASE"
    if ! setpriv --reuid=postgres --regid=postgres --init-groups test -w "$PG_BASE" -a -x "$PG_BASE" 2>/dev/null; then
      # The state dir is under a directory 'postgres' cannot enter (e.g. /root,
      # mode 700). Keep the cluster under /var/lib/postgresql and link it.
      PG_HOME=/var/lib/postgresql/txbox/$(printf '%s' "$PG_BASE" | sha256sum | cut -c1-12)
      if [ ! -L "$PG_BASE/data" ] && [ -d "$PG_HOME" ] && [ ! -e "$PG_BASE/data" ]; then
        # the state dir was wiped: start the linked cluster afresh too, unless it runs
        if ! pid_alive "$(head -n1 "$PG_HOME/data/postmaster.pid" 2>/dev/null)" "$(cmd_pattern postgres)"; then
          rm -rf "$PG_HOME"
        fi
      fi
      mkdir -p "$PG_HOME"
      chown postgres: "$PG_HOME" "$(dirname "$PG_HOME")"
      [ -L "$PG_BASE/data" ] || { rm -rf "$PG_BASE/data"; ln -s "$PG_HOME/data" "$PG_BASE/data"; }
    fi
  fi
  PG_DATA=$PG_HOME/data
}

as_pg_user() {
  if is_root; then
    setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local logf=$1 pwfile locale_opt=(--no-locale) stale
  pg_setup_paths || return 1
  if [ -f "$PG_DATA/PG_VERSION" ]; then
    if [ "$(cat "$PG_DATA/PG_VERSION")" != "$(basename "$(dirname "$PG_BIN")")" ]; then
      log "postgres: $PG_DATA holds a PostgreSQL $(cat "$PG_DATA/PG_VERSION") cluster but $PG_BIN is $(basename "$(dirname "$PG_BIN")"); remove it or install the matching version"
      return 1
    fi
  else
    [ -e "$PG_DATA" ] && rm -rf "$PG_DATA"   # a half-done initdb
    pwfile=$PG_HOME/.pwfile
    printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile"
    is_root && chown "$PG_USER" "$pwfile"
    chmod 600 "$pwfile"
    locale -a 2>/dev/null | grep -qix 'c.utf-\?8' && locale_opt=(--locale=C.UTF-8)
    log "postgres: initdb $PG_DATA"
    if ! as_pg_user "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" -E UTF8 "${locale_opt[@]}" \
      --auth-local=trust --auth-host=scram-sha-256 >>"$logf" 2>&1; then
      rm -f "$pwfile"
      log "postgres: initdb failed"
      return 1
    fi
    rm -f "$pwfile"
  fi
  # a postmaster.pid left by a crash or a reboot would block the start
  # (nothing runs on this data dir: running_pid and postgres_pid_from_server said so)
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    stale=$(head -n1 "$PG_DATA/postmaster.pid")
    pid_alive "$stale" "$(cmd_pattern postgres)" || rm -f "$PG_DATA/postmaster.pid"
  fi
  mkdir -p "$PG_HOME/run"
  is_root && chown "$PG_USER": "$PG_HOME/run"
  # same for the socket lock file (a killed postmaster may linger as a zombie,
  # which PostgreSQL's own staleness check takes for a live process)
  local lock
  for lock in "$PG_HOME"/run/.s.PGSQL.*.lock; do
    [ -f "$lock" ] || continue
    pid_alive "$(head -n1 "$lock")" "$(cmd_pattern postgres)" || rm -f "$lock" "${lock%.lock}"
  done
  local cmd=("$PG_BIN/postgres" -D "$PG_DATA"
    -c "listen_addresses=$HOST" -c "port=$POSTGRES_PORT" -c "unix_socket_directories=$PG_HOME/run"
    -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
    -c shared_buffers=128MB -c log_min_messages=warning -c "log_line_prefix=%m [%p] ")
  if is_root; then
    cmd=(setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "${cmd[@]}")
  fi
  spawn "$logf" "${cmd[@]}"
}

pg_psql() {
  PGPASSWORD=$PG_SUPERUSER_PASSWORD PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$HOST" -p "$POSTGRES_PORT" -U postgres "$@"
}

# Idempotent: role txbox (superuser, password txbox), databases txbox and
# ferretdb; then a real login as txbox.
provision_postgres() {
  local check
  [ -n "${PG_BIN:-}" ] || PG_BIN=$(pg_bin_dir) || return 1
  {
    echo "SELECT 'CREATE ROLE txbox' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txbox') \\gexec"
    echo "ALTER ROLE txbox WITH LOGIN SUPERUSER PASSWORD 'txbox';"
    echo "SELECT 'CREATE DATABASE txbox OWNER txbox' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'txbox') \\gexec"
    if [ "$FERRETDB_HANDLER" = postgresql ]; then
      echo "SELECT 'CREATE DATABASE ferretdb OWNER txbox' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferretdb') \\gexec"
    fi
  } | pg_psql -d postgres >/dev/null || { log "postgres: provisioning as postgres failed"; return 1; }
  check=$(PGPASSWORD=txbox PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -qtA -h "$HOST" -p "$POSTGRES_PORT" -U txbox -d txbox \
    -c 'select 1' 2>&1)
  [ "$check" = 1 ] || { log "postgres: txbox login check failed: $check"; return 1; }
}

# The postmaster's pid, from postmaster.pid (data/ may be a symlink, see pg_setup_paths).
postgres_pid_from_server() {
  local d
  d=$(head -n1 "$STATE_DIR/postgres/data/postmaster.pid" 2>/dev/null)
  pid_alive "$d" "$(cmd_pattern postgres)" && echo "$d"
}

# ------------------------------------------------------------------ mariadb ---

mariadb_conf() {
  local base=$STATE_DIR/mariadb logf=$1
  mkdir -p "$base/run"
  {
    echo "# generated by scripts/services.sh; rewritten at every start"
    echo "[mysqld]"
    is_root && echo "user=root"
    echo "datadir=$base/data"
    echo "socket=$base/run/mariadb.sock"
    echo "pid-file=$(pid_file mariadb)"
    echo "port=$MYSQL_PORT"
    echo "bind-address=$HOST"
    echo "skip-name-resolve"
    echo "log-error=$logf"
    echo "character-set-server=utf8mb4"
    echo "collation-server=utf8mb4_general_ci"
    echo "innodb_flush_log_at_trx_commit=2"
    echo "innodb_buffer_pool_size=256M"
    echo "innodb_doublewrite=0"
    echo "sync_binlog=0"
    echo "max_connections=200"
    echo "[client-server]"
    echo "socket=$base/run/mariadb.sock"
  } >"$base/my.cnf"
  echo "$base/my.cnf"
}

mariadb_bin() {
  if command -v mariadbd >/dev/null; then command -v mariadbd; else echo /usr/sbin/mariadbd; fi
}

start_mariadb() {
  local logf=$1 base=$STATE_DIR/mariadb cnf
  cnf=$(mariadb_conf "$logf")
  if [ ! -d "$base/data/mysql" ]; then
    rm -rf "$base/data"
    log "mariadb: mariadb-install-db $base/data"
    # root@localhost and <this OS user>@localhost authenticate by unix_socket
    if ! mariadb-install-db --defaults-file="$cnf" --user="$(id -un)" --auth-root-authentication-method=socket \
      --skip-test-db --skip-name-resolve >>"$logf" 2>&1; then
      log "mariadb: mariadb-install-db failed"
      rm -rf "$base/data"
      return 1
    fi
  fi
  rm -f "$(pid_file mariadb)"
  spawn "$logf" "$(mariadb_bin)" --defaults-file="$cnf"
}

# Idempotent: database txbox, users txbox@% and txbox@localhost (password
# txbox, all privileges); then a real login as txbox over TCP.
provision_mariadb() {
  local base=$STATE_DIR/mariadb out
  # as the OS user over our socket (unix_socket authentication)
  timeout 20 mariadb --no-defaults --protocol=socket --socket="$base/run/mariadb.sock" -u "$(id -un)" >/dev/null <<'SQL' || { log "mariadb: provisioning failed"; return 1; }
CREATE DATABASE IF NOT EXISTS txbox CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'txbox'@'%' IDENTIFIED BY 'txbox';
CREATE USER IF NOT EXISTS 'txbox'@'localhost' IDENTIFIED BY 'txbox';
ALTER USER 'txbox'@'%' IDENTIFIED BY 'txbox';
ALTER USER 'txbox'@'localhost' IDENTIFIED BY 'txbox';
GRANT ALL PRIVILEGES ON *.* TO 'txbox'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'txbox'@'localhost' WITH GRANT OPTION;
DROP USER IF EXISTS ''@'localhost';
SQL
  out=$(timeout 10 mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL_PORT" -utxbox -ptxbox txbox -Nse 'select 1' 2>&1)
  [ "$out" = 1 ] || { log "mariadb: txbox login check failed: $out"; return 1; }
}

# -------------------------------------------------------------------- redis ---

start_redis() {
  local logf=$1 dir=$STATE_DIR/redis bin
  mkdir -p "$dir"
  bin=$(command -v redis-server || echo /usr/bin/redis-server)
  rm -f "$(pid_file redis)"
  spawn "$logf" "$bin" --bind "$HOST" --port "$REDIS_PORT" --daemonize no --save "" --appendonly no \
    --dir "$dir" --pidfile "$(pid_file redis)" --logfile "" --protected-mode yes
}

# --------------------------------------------------------------------- nats ---

start_nats() {
  local logf=$1 dir=$STATE_DIR/nats
  mkdir -p "$dir"
  rm -f "$(pid_file nats)"
  spawn "$logf" "$(command -v nats-server)" -n txbox -a "$HOST" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
    -js -sd "$dir" -P "$(pid_file nats)"
}

# ------------------------------------------------------------------ mongodb ---

ferretdb_needs_local_postgres() { [ "$FERRETDB_HANDLER" = postgresql ] && [ -z "$FERRETDB_POSTGRESQL_URL" ]; }

start_mongodb() {
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

# ----------------------------------------------------------------- dynamodb ---

start_dynamodb() {
  local logf=$1 home storage=(-inMemory)
  home=$(dynamodb_home)
  [ -f "$home/.complete" ] || { log "dynamodb: jars missing in $home"; return 1; }
  if [ -n "$DYNAMODB_DB_PATH" ]; then mkdir -p "$DYNAMODB_DB_PATH" && storage=(-dbPath "$DYNAMODB_DB_PATH"); fi
  # it unpacks sqlite4java's native library into java.io.tmpdir; keep that here
  rm -rf "$STATE_DIR/dynamodb/tmp"
  mkdir -p "$STATE_DIR/dynamodb/tmp"
  spawn "$logf" java -Xms64m -Xmx1g -XX:+UseSerialGC -Djava.awt.headless=true \
    -Djava.io.tmpdir="$STATE_DIR/dynamodb/tmp" \
    -Djava.library.path="$home/lib" -Dtxbox.dynamodb.host="$HOST" \
    -cp "$home/classes:$home/lib/*" LoopbackServerRunner \
    "${storage[@]}" -sharedDb -disableTelemetry -port "$DYNAMODB_PORT"
}

# ---------------------------------------------------------------- commands ---

ensure_dirs() { mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$CACHE_DIR"; }

take_lock() {
  ensure_dirs
  exec 9>"$STATE_DIR/.lock"
  if ! flock -n 9; then
    log "waiting for another services.sh to finish (lock $STATE_DIR/.lock)"
    flock -w 1800 9 || die "could not take $STATE_DIR/.lock"
  fi
}

# Start SERVICE unless it is running. Sets STARTED_PID. Returns 2 if it was
# already running.
start_one() {
  local s=$1 logf pid port
  logf=$(log_file "$s")
  port=$(port_of "$s")
  if pid=$(running_pid "$s"); then
    STARTED_PID=$pid
    return 2
  fi
  if [ "$s" = postgres ] && pid=$(postgres_pid_from_server); then
    echo "$pid" >"$(pid_file postgres)"
    STARTED_PID=$pid
    return 2
  fi
  rm -f "$(pid_file "$s")"
  if tcp_open "$port"; then
    log "$s: port $port is already in use by a process that is not ours ($(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -n1)); stop it or set $(port_var "$s")"
    return 1
  fi
  rotate "$logf"
  printf '=== %s: started by scripts/services.sh at %s ===\n' "$s" "$(date -Is)" >>"$logf"
  STARTED_PID=$("start_$s" "$logf") || return 1
  [ -n "$STARTED_PID" ] || return 1
  # postgres/mariadb/redis/nats exec directly, so this is the server's pid
  echo "$STARTED_PID" >"$(pid_file "$s")"
}

# pid_exists PID: the process exists and is not a zombie.
pid_exists() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

provision_one() {
  case $1 in
    postgres) provision_postgres ;;
    mariadb) provision_mariadb ;;
    *) return 0 ;;
  esac
}

# launch SERVICE: start it unless running; fills PIDS, FRESH, T_START (of cmd_up).
launch() {
  local s=$1 rc
  T_START[$s]=$(now)
  start_one "$s"
  rc=$?
  case $rc in
    0) PIDS[$s]=$STARTED_PID; FRESH[$s]=1 ;;
    2) PIDS[$s]=$STARTED_PID; FRESH[$s]=0 ;;
    *) failed+=("$s"); return 1 ;;
  esac
}

# ready SERVICE: record and report a server that answered.
ready() {
  local s=$1
  if [ "$s" = postgres ] && [ "${FRESH[$s]}" = 1 ]; then
    # record the postmaster's pid (the one spawned exec'd into it, but be sure)
    postgres_pid_from_server >"$(pid_file postgres)" && PIDS[$s]=$(head -n1 "$(pid_file postgres)")
  fi
  # keep our pid file authoritative even if the server rewrote it
  echo "${PIDS[$s]}" >"$(pid_file "$s")"
  if [ "${FRESH[$s]}" = 1 ]; then
    log "$s: started, ready on $HOST:$(port_of "$s") in $(since "${T_START[$s]}") (pid ${PIDS[$s]})"
  else
    log "$s: already running on $HOST:$(port_of "$s") (pid ${PIDS[$s]})"
  fi
}

cmd_up() {
  parse_names "$@"
  local t_all s pkgs=() failed=() bg_pid="" deferred=()
  declare -A PIDS=() T_START=() FRESH=()
  t_all=$(now)
  # FerretDB on the PostgreSQL handler needs the PostgreSQL server.
  if ferretdb_needs_local_postgres && [[ " ${SERVICES[*]} " == *" mongodb "* ]] && [[ " ${SERVICES[*]} " != *" postgres "* ]]; then
    SERVICES=(postgres "${SERVICES[@]}")
  fi
  take_lock

  # 1. Debian packages, in one apt-get run.
  mapfile -t pkgs < <(packages_needed "${SERVICES[@]}" "${CLUSTERS[@]}")
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt_install "${pkgs[@]}" || die "could not install: ${pkgs[*]}"
  fi

  # 2. FerretDB build and DynamoDB Local resolution (Maven in the background
  #    while Go builds: one is network-bound, the other CPU-bound).
  local want_mongo=0 want_ddb=0
  for s in "${SERVICES[@]}"; do
    [ "$s" = mongodb ] && want_mongo=1
    [ "$s" = dynamodb ] && want_ddb=1
  done
  if [ $want_ddb = 1 ] && [ ! -f "$(dynamodb_home)/.complete" ]; then
    resolve_dynamodb &
    bg_pid=$!
  fi
  if [ $want_mongo = 1 ] && ! build_ferretdb; then
    failed+=(mongodb)
  fi
  if [ -n "$bg_pid" ] && ! wait "$bg_pid"; then
    failed+=(dynamodb)
  fi

  # 3. Start whatever is not running, without waiting; then 4. poll them all
  #    until each answers a real protocol round trip, or its deadline passes.
  local pending=()
  for s in "${SERVICES[@]}"; do
    [[ " ${failed[*]} " == *" $s "* ]] && continue
    if [ "$s" = mongodb ] && ferretdb_needs_local_postgres; then
      deferred=(mongodb)   # started once postgres is ready and provisioned
      continue
    fi
    launch "$s" && pending+=("$s")
  done
  while [ ${#pending[@]} -gt 0 ]; do
    local still=() waited
    for s in "${pending[@]}"; do
      waited=$(awk -v a="${T_START[$s]}" -v b="$(now)" 'BEGIN { printf "%d", b - a }')
      if "ping_$s"; then
        if provision_one "$s"; then
          ready "$s"
          if [ "$s" = postgres ] && [ ${#deferred[@]} -gt 0 ]; then
            launch mongodb && still+=(mongodb)
            deferred=()
          fi
        else
          log "$s: answers, but provisioning failed; see $(log_file "$s")"
          failed+=("$s")
        fi
      elif ! pid_exists "${PIDS[$s]}"; then
        log "$s: process ${PIDS[$s]} exited during start-up; see $(log_file "$s")"
        tail_log "$(log_file "$s")"
        failed+=("$s")
      elif [ "${FRESH[$s]}" = 0 ] && [ "$waited" -ge "$HUNG_GRACE" ]; then
        # running (not started by this run) but not answering: hung; start it anew
        log "$s: pid ${PIDS[$s]} is running but has not answered for ${HUNG_GRACE}s; restarting it"
        wait_stopped "$s" "$(signal_one "$s")" 10
        if launch "$s"; then still+=("$s"); fi
      elif [ "$waited" -ge "$TIMEOUT" ]; then
        log "$s: not ready after ${TIMEOUT}s (port $(port_of "$s")); see $(log_file "$s")"
        tail_log "$(log_file "$s")"
        failed+=("$s")
      else
        still+=("$s")
      fi
    done
    pending=("${still[@]}")
    [ ${#pending[@]} -gt 0 ] && sleep 0.2
  done
  [ ${#deferred[@]} -gt 0 ] && failed+=("${deferred[@]}")
  for s in "${CLUSTERS[@]}"; do
    "${s//-/_}_up" || failed+=("$s")
  done

  if [ ${#failed[@]} -gt 0 ]; then
    log "up: FAILED: ${failed[*]} (logs in $LOG_DIR) — total $(since "$t_all")"
    return 1
  fi
  local everything=("${SERVICES[@]}" "${CLUSTERS[@]}")
  log "up: ${everything[*]} ready in $(since "$t_all")"
}

# signal_one SERVICE: ask it to stop; prints its pid, or nothing if it is not running.
signal_one() {
  local s=$1 pid sig=TERM
  pid=$(running_pid "$s") || { [ "$s" = postgres ] && pid=$(postgres_pid_from_server); } || {
    rm -f "$(pid_file "$s")"
    log "$s: not running"
    return 0
  }
  [ "$s" = postgres ] && sig=INT   # PostgreSQL "fast" shutdown
  kill -s "$sig" "$pid" 2>/dev/null
  echo "$pid"
}

# wait_stopped SERVICE PID [SECONDS]: wait up to SECONDS (60), then SIGKILL.
wait_stopped() {
  local s=$1 pid=$2 max=${3:-60} i
  [ -n "$pid" ] || return 0
  for ((i = 0; i < max * 5; i++)); do
    pid_alive "$pid" "$(cmd_pattern "$s")" || break
    sleep 0.2
  done
  if pid_alive "$pid" "$(cmd_pattern "$s")"; then
    log "$s: pid $pid still alive after ${max}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
  rm -f "$(pid_file "$s")"
  log "$s: stopped (pid $pid)"
}

cmd_down() {
  parse_names "$@"
  take_lock
  local s i pid
  declare -A STOPPING=()
  # FerretDB may use PostgreSQL: stop it first, then everything else at once.
  if [[ " ${SERVICES[*]} " == *" mongodb "* ]]; then
    pid=$(signal_one mongodb)
    [ -n "$pid" ] && wait_stopped mongodb "$pid"
  fi
  for s in "${SERVICES[@]}"; do
    [ "$s" = mongodb ] && continue
    pid=$(signal_one "$s")
    [ -n "$pid" ] && STOPPING[$s]=$pid
  done
  for s in "${SERVICES[@]}"; do
    [ -n "${STOPPING[$s]:-}" ] && wait_stopped "$s" "${STOPPING[$s]}"
  done
  for s in "${CLUSTERS[@]}"; do "${s//-/_}_down"; done
  return 0
}

cmd_status() {
  parse_names "$@"
  local s pid state rc=0
  for s in "${SERVICES[@]}"; do
    if pid=$(running_pid "$s") || { [ "$s" = postgres ] && pid=$(postgres_pid_from_server); }; then
      if "ping_$s"; then
        state=up
      else
        state=down rc=1
        pid="$pid(not answering)"
      fi
    else
      state=down rc=1
      if [ -s "$(pid_file "$s")" ]; then pid="$(head -n1 "$(pid_file "$s")")(stale)"; else pid=-; fi
    fi
    printf '%-9s %-5s port=%-6s pid=%-10s log=%s\n' "$s" "$state" "$(port_of "$s")" "$pid" "$(log_file "$s")"
  done
  for s in "${CLUSTERS[@]}"; do "${s//-/_}_status" || rc=1; done
  return $rc
}

cmd_env() {
  local prefix=""
  case ${1:-} in
    --export) prefix="export " ;;
    "") ;;
    *) die "usage: $0 env [--export]" ;;
  esac
  cat <<EOF
${prefix}TXBOX_POSTGRES_URL=postgres://txbox:txbox@$HOST:$POSTGRES_PORT/txbox
${prefix}TXBOX_MYSQL_URL=mysql://txbox:txbox@$HOST:$MYSQL_PORT/txbox
${prefix}TXBOX_MONGODB_URL=mongodb://$HOST:$MONGODB_PORT/txbox
${prefix}TXBOX_REDIS_URL=redis://$HOST:$REDIS_PORT
${prefix}TXBOX_DYNAMODB_URL=http://$HOST:$DYNAMODB_PORT
${prefix}TXBOX_NATS_URL=nats://$HOST:$NATS_PORT
EOF
  redis_cluster_env "$prefix"
}

usage() {
  cat >&2 <<EOF
usage: $0 up [names...] | down [names...] | status [names...] | env [--export]
names: ${ALL_SERVICES[*]} ${ALL_CLUSTERS[*]} (default: all)
state: $STATE_DIR (TXBOX_SERVICES_DIR), logs: $LOG_DIR
EOF
}

main() {
  local sub=${1:-}
  [ $# -gt 0 ] && shift
  case $sub in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
