# shellcheck shell=bash
# scripts/services/redis.sh — sourced by scripts/services.sh: one Redis from the Debian
# package, no persistence. redis-cluster.sh runs the same binary as a cluster.

REDIS_PORT=${TXBOX_REDIS_PORT:-6379}

redis_aliases() { :; }
redis_port() { echo "$REDIS_PORT"; }
redis_port_var() { echo TXBOX_REDIS_PORT; }
redis_process() { echo redis-server; }
redis_env() { echo "${1}TXBOX_REDIS_URL=redis://$HOST:$REDIS_PORT"; }
redis_packages() { [ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || echo redis-server; }
redis_server_bin() { command -v redis-server || echo /usr/bin/redis-server; }

redis_ping() { [ "$(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_start() {
  local logf=$1 dir=$STATE_DIR/redis bin
  mkdir -p "$dir"
  bin=$(redis_server_bin)
  rm -f "$(pid_file redis)"
  spawn "$logf" "$bin" --bind "$HOST" --port "$REDIS_PORT" --daemonize no --save "" --appendonly no \
    --dir "$dir" --pidfile "$(pid_file redis)" --logfile "" --protected-mode yes
}
