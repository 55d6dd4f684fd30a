# shellcheck shell=bash
# scripts/services/dynamodb.sh — sourced by scripts/services.sh: DynamoDB Local, its jars
# resolved by Maven from tools/dynamodb-local/pom.xml into the cache, started through
# LoopbackServerRunner (bound to 127.0.0.1), -sharedDb, in memory unless given a directory.

DYNAMODB_PORT=${TXBOX_DYNAMODB_PORT:-8000}
# DynamoDB Local keeps its tables in memory unless given a directory (a restart then keeps them).
DYNAMODB_DB_PATH=${TXBOX_DYNAMODB_DB_PATH:-}
DYNAMODB_LOCAL_VERSION=$(sed -n 's:.*<dynamodb-local.version>\(.*\)</dynamodb-local.version>.*:\1:p' \
  "$ROOT_DIR/tools/dynamodb-local/pom.xml" 2>/dev/null)

dynamodb_aliases() { echo dynamo ddb dynamodb-local; }
dynamodb_port() { echo "$DYNAMODB_PORT"; }
dynamodb_port_var() { echo TXBOX_DYNAMODB_PORT; }
dynamodb_process() { echo LoopbackServerRunner; }
dynamodb_env() { echo "${1}TXBOX_DYNAMODB_URL=http://$HOST:$DYNAMODB_PORT"; }
dynamodb_packages() {
  command -v curl >/dev/null || echo curl
  command -v javac >/dev/null || echo openjdk-17-jdk-headless
  command -v mvn >/dev/null || echo maven
}
dynamodb_prepare() { resolve_dynamodb; }

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

dynamodb_ping() {
  curl -sS --max-time 3 -X POST "http://$HOST:$DYNAMODB_PORT/" \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=txbox/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=txbox' \
    -d '{}' 2>/dev/null | grep -q '"TableNames"'
}

dynamodb_start() {
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
