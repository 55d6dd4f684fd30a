# shellcheck shell=bash
# scripts/services/postgres.sh — sourced by scripts/services.sh: PostgreSQL from the Debian
# package, an own cluster in <state>/postgres with role and database txbox (password txbox,
# superuser), fsync off. Also FerretDB's backend (database ferretdb, see mongodb.sh).

POSTGRES_PORT=${TXBOX_POSTGRES_PORT:-5432}
PG_SUPERUSER_PASSWORD=postgres

postgres_aliases() { echo postgresql pg; }
postgres_port() { echo "$POSTGRES_PORT"; }
postgres_port_var() { echo TXBOX_POSTGRES_PORT; }
postgres_process() { echo "bin/postgres -D"; }
postgres_stop_signal() { echo INT; }   # PostgreSQL "fast" shutdown
postgres_env() { echo "${1}TXBOX_POSTGRES_URL=postgres://txbox:txbox@$HOST:$POSTGRES_PORT/txbox"; }
postgres_packages() { pg_bin_dir >/dev/null || echo postgresql; }

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

postgres_ping() {
  local bin
  bin=$(pg_bin_dir) || return 1
  PGCONNECT_TIMEOUT=2 timeout 5 "$bin/pg_isready" -q -h "$HOST" -p "$POSTGRES_PORT" -d postgres
}

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
        if ! pid_alive "$(head -n1 "$PG_HOME/data/postmaster.pid" 2>/dev/null)" "$(postgres_process)"; then
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

postgres_start() {
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
  # (nothing runs on this data dir: running_pid and postgres_server_pid said so)
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    stale=$(head -n1 "$PG_DATA/postmaster.pid")
    pid_alive "$stale" "$(postgres_process)" || rm -f "$PG_DATA/postmaster.pid"
  fi
  mkdir -p "$PG_HOME/run"
  is_root && chown "$PG_USER": "$PG_HOME/run"
  # same for the socket lock file (a killed postmaster may linger as a zombie,
  # which PostgreSQL's own staleness check takes for a live process)
  local lock
  for lock in "$PG_HOME"/run/.s.PGSQL.*.lock; do
    [ -f "$lock" ] || continue
    pid_alive "$(head -n1 "$lock")" "$(postgres_process)" || rm -f "$lock" "${lock%.lock}"
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
postgres_provision() {
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
postgres_server_pid() {
  local d
  d=$(head -n1 "$STATE_DIR/postgres/data/postmaster.pid" 2>/dev/null)
  pid_alive "$d" "$(postgres_process)" && echo "$d"
}
