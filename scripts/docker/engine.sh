#!/usr/bin/env bash
# scripts/docker/engine.sh — a private Docker engine for the testcontainers path, on a
# machine without one (CI and this project's development machines).
#
#   scripts/docker/engine.sh up           install docker.io if missing, start dockerd unless running
#   scripts/docker/engine.sh down         stop it (idempotent; its containers stop with it)
#   scripts/docker/engine.sh status       exit 1 if it does not answer
#   eval "$(scripts/docker/engine.sh env --export)"   DOCKER_HOST and the testcontainers settings
#
# It leaves the host's networking alone: no iptables rules (--iptables=false), no
# ip_forward, no NAT, so containers reach nothing outside this machine. Published ports are
# bound to 127.0.0.1 (--ip) through docker-proxy, and clients are told to use 127.0.0.1
# (TESTCONTAINERS_HOST_OVERRIDE; this machine has a /.dockerenv that makes testcontainers
# look for a gateway address otherwise). Containers get a resolver that answers nothing
# (--dns 127.0.0.1), so a name lookup fails at once instead of timing out.
#
# Its socket, data and logs live in ${TXBOX_DOCKER_DIR:-~/.cache/txbox/docker}: images
# survive between runs on the same machine. Another engine on the machine is neither used
# nor disturbed. See docs/SERVICES.md.
set -uo pipefail

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
DOCKER_DIR=${TXBOX_DOCKER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/txbox/docker}
SOCKET=$DOCKER_DIR/docker.sock
PID_FILE=$DOCKER_DIR/dockerd.pid
LOG=$DOCKER_DIR/dockerd.log
TIMEOUT=${TXBOX_DOCKER_TIMEOUT:-60}
# The bridge's address; containers are hosts of this machine only. Docker's own bridge
# (docker0) unless TXBOX_DOCKER_BRIDGE names another, which is created here when missing: a
# second engine beside the first needs a bridge of its own.
BRIDGE=${TXBOX_DOCKER_BRIDGE:-docker0}
BRIDGE_IP=${TXBOX_DOCKER_BRIDGE_IP:-172.29.0.1/24}

log() { printf '[docker] %s\n' "$*" >&2; }
die() { printf '[docker] error: %s\n' "$*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

docker_cli() { DOCKER_HOST=unix://$SOCKET docker "$@"; }

engine_pid() {
  local pid
  [ -s "$PID_FILE" ] || return 1
  pid=$(head -n1 "$PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dockerd.*$SOCKET" || return 1
  echo "$pid"
}

answers() { [ -S "$SOCKET" ] && timeout 10 env DOCKER_HOST="unix://$SOCKET" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_engine() {
  command -v dockerd >/dev/null && command -v docker >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "dockerd is missing and only root can apt-get install docker.io"
  local t0 policy_created=0 rc=0
  t0=$(now)
  # Debian's package would start its own daemon through its init script; keep it from that.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  log "apt-get install docker.io (log: $DOCKER_DIR/apt.log)"
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 docker.io
  } >"$DOCKER_DIR/apt.log" 2>&1 || rc=$?
  [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { tail -n 20 "$DOCKER_DIR/apt.log" >&2; die "apt-get install docker.io failed"; }
  log "docker.io installed in $(since "$t0")"
}

cmd_up() {
  mkdir -p "$DOCKER_DIR"
  exec 9>"$DOCKER_DIR/.lock"
  flock -w 600 9 || die "could not take $DOCKER_DIR/.lock"
  if engine_pid >/dev/null && answers; then
    log "engine already running (pid $(engine_pid), socket $SOCKET)"
    return 0
  fi
  install_engine
  local pid t0 i
  if pid=$(engine_pid); then
    log "engine pid $pid does not answer; stopping it"
    stop_engine "$pid"
  fi
  rm -f "$SOCKET" "$PID_FILE"
  [ -s "$LOG" ] && mv -f "$LOG" "$LOG.1"
  local bridge_args=(--bip "$BRIDGE_IP")
  if [ "$BRIDGE" != docker0 ]; then
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
      ip link add name "$BRIDGE" type bridge && ip addr add "$BRIDGE_IP" dev "$BRIDGE" && ip link set "$BRIDGE" up ||
        die "could not create the bridge $BRIDGE ($BRIDGE_IP)"
    fi
    bridge_args=(--bridge "$BRIDGE")
  fi
  t0=$(now)
  # cgroupfs: no systemd here. exec-root holds containerd's sockets: keep its path short.
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if [[ $fd =~ ^[0-9]+$ ]] && [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done
    cd "$DOCKER_DIR" || exit 1
    exec setsid dockerd \
      -H "unix://$SOCKET" \
      --data-root "$DOCKER_DIR/data" \
      --exec-root "$DOCKER_DIR/exec" \
      --pidfile "$PID_FILE" \
      --storage-driver overlay2 \
      --exec-opt native.cgroupdriver=cgroupfs \
      --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
      "${bridge_args[@]}" \
      --ip 127.0.0.1 \
      --dns 127.0.0.1 \
      --userland-proxy=true \
      </dev/null >>"$LOG" 2>&1
  ) &
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    answers && break
    sleep 0.2
  done
  answers || {
    tail -n 25 "$LOG" >&2
    die "dockerd did not answer on $SOCKET within ${TIMEOUT}s (log: $LOG)"
  }
  log "engine $(docker_cli version --format '{{.Server.Version}}') ready on $SOCKET in $(since "$t0") (pid $(engine_pid))"
}

stop_engine() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  log "dockerd pid $pid still alive after 30s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}

cmd_down() {
  local pid
  if pid=$(engine_pid); then
    stop_engine "$pid"
    log "engine stopped (pid $pid)"
  else
    log "engine not running"
  fi
  rm -f "$PID_FILE"
  # dockerd leaves its default network namespace mounted
  if mountpoint -q "$DOCKER_DIR/exec/netns/default" 2>/dev/null; then umount "$DOCKER_DIR/exec/netns/default"; fi
  # a bridge of our own goes with its engine (docker0 stays, as Docker leaves it)
  if [ "$BRIDGE" != docker0 ] && ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
}

cmd_status() {
  if engine_pid >/dev/null && answers; then
    echo "docker up pid=$(engine_pid) socket=$SOCKET version=$(docker_cli version --format '{{.Server.Version}}')"
  else
    echo "docker down socket=$SOCKET log=$LOG"
    return 1
  fi
}

cmd_env() {
  local prefix=""
  case ${1:-} in
    --export) prefix="export " ;;
    "") ;;
    *) die "usage: $0 env [--export]" ;;
  esac
  echo "${prefix}DOCKER_HOST=unix://$SOCKET"
  echo "${prefix}TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1"
  # Ryuk mounts the engine's socket; tell it which one (the default is /var/run/docker.sock).
  echo "${prefix}TESTCONTAINERS_DOCKER_SOCKET_OVERRIDE=$SOCKET"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) shift; cmd_env "$@" ;;
  *) echo "usage: $0 up | down | status | env [--export]" >&2; exit 2 ;;
esac
