# shellcheck shell=bash
# scripts/services/nats.sh — sourced by scripts/services.sh: nats-server from the Debian
# package with JetStream (-js, store in <state>/nats) and its monitoring port for /healthz.

NATS_PORT=${TXBOX_NATS_PORT:-4222}
NATS_MONITOR_PORT=${TXBOX_NATS_MONITOR_PORT:-8222}

nats_aliases() { echo nats-server jetstream; }
nats_port() { echo "$NATS_PORT"; }
nats_port_var() { echo TXBOX_NATS_PORT; }
nats_process() { echo nats-server; }
nats_env() { echo "${1}TXBOX_NATS_URL=nats://$HOST:$NATS_PORT"; }
nats_packages() {
  command -v nats-server >/dev/null || echo nats-server
  command -v curl >/dev/null || echo curl   # for the /healthz check
}

nats_ping() {
  curl -fsS --max-time 2 "http://$HOST:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" 2>/dev/null | grep -q '"ok"' || return 1
  # NATS protocol: the server greets with INFO; PING must be answered by PONG
  timeout 3 bash -c '
    exec 3<>/dev/tcp/'"$HOST"'/'"$NATS_PORT"' || exit 1
    IFS= read -r line <&3; [[ $line == INFO* ]] || exit 1
    printf "CONNECT {\"verbose\":false}\r\nPING\r\n" >&3
    while IFS= read -r line <&3; do [[ $line == PONG* ]] && exit 0; [[ $line == -ERR* ]] && exit 1; done
    exit 1' 2>/dev/null
}

nats_start() {
  local logf=$1 dir=$STATE_DIR/nats
  mkdir -p "$dir"
  rm -f "$(pid_file nats)"
  spawn "$logf" "$(command -v nats-server)" -n txbox -a "$HOST" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" \
    -js -sd "$dir" -P "$(pid_file nats)"
}
