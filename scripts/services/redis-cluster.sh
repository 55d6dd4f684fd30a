# shellcheck shell=bash
# scripts/services/redis-cluster.sh — sourced by scripts/services.sh (uses lib.sh's helpers
# log, spawn, pid_alive, tcp_open, rotate, tail_log, now, since; redis.sh's redis_packages
# and redis_server_bin; the driver's HOST, STATE_DIR, RUN_DIR, LOG_DIR, TIMEOUT). A native
# Redis Cluster of three masters on loopback, no replicas, no persistence, for the Redis
# adapter's cluster suite (TXBOX_REDIS_CLUSTER_NODES). Several processes, so it has the
# driver's cluster hooks (up, down, status) instead of a single server's.
#
# Up is idempotent: a healthy cluster is left alone; a node that died is started again and
# rejoins from its nodes.conf; a cluster that does not become healthy is reset and created
# anew (its data is test data).

REDIS_CLUSTER_PORTS=${TXBOX_REDIS_CLUSTER_PORTS:-7101,7102,7103}

redis_cluster_aliases() { echo rediscluster redis_cluster; }
redis_cluster_packages() { redis_packages; }

redis_cluster_ports() { tr ',' ' ' <<<"$REDIS_CLUSTER_PORTS"; }
redis_cluster_nodes() { local p out=(); for p in $(redis_cluster_ports); do out+=("$HOST:$p"); done; (IFS=,; echo "${out[*]}"); }
redis_cluster_pid_file() { echo "$RUN_DIR/redis-cluster-$1.pid"; }
redis_cluster_log() { echo "$LOG_DIR/redis-cluster-$1.log"; }
redis_cluster_cli() { local p=$1; shift; timeout 5 redis-cli -h "$HOST" -p "$p" "$@" 2>/dev/null; }

# redis_cluster_node_pid PORT: prints the pid of our node on PORT if it is alive.
redis_cluster_node_pid() {
  local pf pid
  pf=$(redis_cluster_pid_file "$1")
  [ -s "$pf" ] || return 1
  pid=$(head -n1 "$pf")
  pid_alive "$pid" "redis-server" || return 1
  echo "$pid"
}

# redis_cluster_info PORT FIELD: one field of CLUSTER INFO.
redis_cluster_info() { redis_cluster_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }

# Healthy: every node says state ok, all 16384 slots assigned, and knows every other node.
redis_cluster_healthy() {
  local p want
  want=$(redis_cluster_ports | wc -w)
  for p in $(redis_cluster_ports); do
    [ "$(redis_cluster_info "$p" cluster_state)" = ok ] || return 1
    [ "$(redis_cluster_info "$p" cluster_slots_assigned)" = 16384 ] || return 1
    [ "$(redis_cluster_info "$p" cluster_known_nodes)" = "$want" ] || return 1
  done
}

redis_cluster_start_node() {
  local p=$1 dir=$STATE_DIR/redis-cluster/$1 logf bin pid
  logf=$(redis_cluster_log "$p")
  if tcp_open "$p"; then
    log "redis-cluster: port $p is in use by a process that is not ours; stop it or set TXBOX_REDIS_CLUSTER_PORTS"
    return 1
  fi
  mkdir -p "$dir"
  rotate "$logf"
  bin=$(redis_server_bin)
  pid=$(spawn "$logf" "$bin" --bind "$HOST" --port "$p" --daemonize no --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
    --dir "$dir" --pidfile "$(redis_cluster_pid_file "$p")" --logfile "" --protected-mode yes) || return 1
  echo "$pid" >"$(redis_cluster_pid_file "$p")"
}

# Empties every node and forgets the old cluster, then creates one over all nodes.
redis_cluster_create() {
  local p out
  for p in $(redis_cluster_ports); do
    redis_cluster_cli "$p" flushall >/dev/null
    redis_cluster_cli "$p" cluster reset hard >/dev/null
  done
  # shellcheck disable=SC2046
  if ! out=$(timeout 60 redis-cli --cluster create $(redis_cluster_nodes | tr ',' ' ') \
    --cluster-replicas 0 --cluster-yes 2>&1); then
    log "redis-cluster: redis-cli --cluster create failed:"
    printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /' >&2
    return 1
  fi
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds or time is up.
redis_cluster_wait() {
  local max=$1 i
  shift
  for ((i = 0; i < max * 5; i++)); do
    "$@" && return 0
    sleep 0.2
  done
  "$@"
}

redis_cluster_pong() { [ "$(redis_cluster_cli "$1" ping)" = PONG ]; }

redis_cluster_fresh() {
  local p
  for p in $(redis_cluster_ports); do
    [ "$(redis_cluster_info "$p" cluster_known_nodes)" = 1 ] || return 1
    [ "$(redis_cluster_info "$p" cluster_slots_assigned)" = 0 ] || return 1
  done
}

redis_cluster_up() {
  local t0 p started=0
  t0=$(now)
  if redis_cluster_healthy; then
    log "redis-cluster: already running on $(redis_cluster_nodes)"
    return 0
  fi
  for p in $(redis_cluster_ports); do
    redis_cluster_node_pid "$p" >/dev/null && continue
    redis_cluster_start_node "$p" || return 1
    started=$((started + 1))
  done
  for p in $(redis_cluster_ports); do
    if ! redis_cluster_wait "$TIMEOUT" redis_cluster_pong "$p"; then
      log "redis-cluster: node $p not answering after ${TIMEOUT}s"
      tail_log "$(redis_cluster_log "$p")"
      return 1
    fi
  done
  # A node that was restarted rejoins from its nodes.conf within a few seconds; brand-new
  # nodes (or a cluster that stays broken) get a cluster created over them.
  if redis_cluster_fresh || ! redis_cluster_wait 10 redis_cluster_healthy; then
    redis_cluster_create || return 1
    if ! redis_cluster_wait 30 redis_cluster_healthy; then
      log "redis-cluster: created, but not healthy after 30s"
      return 1
    fi
  fi
  log "redis-cluster: ready on $(redis_cluster_nodes) in $(since "$t0") ($started node(s) started)"
}

redis_cluster_down() {
  local p pid
  for p in $(redis_cluster_ports); do
    pid=$(redis_cluster_node_pid "$p") || continue
    kill -TERM "$pid" 2>/dev/null
    redis_cluster_wait 10 bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null
    rm -f "$(redis_cluster_pid_file "$p")"
    log "redis-cluster: node $p stopped (pid $pid)"
  done
}

redis_cluster_status() {
  local state=up pids=() p pid
  for p in $(redis_cluster_ports); do
    if pid=$(redis_cluster_node_pid "$p"); then pids+=("$pid"); else pids+=(-); fi
  done
  redis_cluster_healthy || state=down
  printf '%-13s %-5s ports=%s pids=%s log=%s\n' redis-cluster "$state" "$REDIS_CLUSTER_PORTS" \
    "$(IFS=,; echo "${pids[*]}")" "$LOG_DIR/redis-cluster-<port>.log"
  [ "$state" = up ]
}

redis_cluster_env() { echo "${1}TXBOX_REDIS_CLUSTER_NODES=$(redis_cluster_nodes)"; }
