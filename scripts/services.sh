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
# Names: postgres mariadb mysql8 redis nats mongodb dynamodb (aliases: pg, postgresql,
# mysql, ferretdb, mongo, dynamo, ddb), and redis-cluster (three processes).
# Default: all.
#
# This file is the driver: settings, names, the lock, and the lifecycle every
# server shares (start unless running, poll until ready, provision, stop,
# status). What differs per server is in scripts/services/<name>.sh, which
# defines functions named <name>_<hook> (the name with '-' as '_'):
#
#   _aliases       other names it answers to
#   _port          its TCP port on 127.0.0.1; _port_var: the TXBOX_* variable that sets it
#   _process       text /proc/PID/cmdline must contain for a pid to be this server's
#   _packages      the Debian packages to install, one a line, for what is missing
#   _start LOG     start it detached (spawn), print its pid
#   _ping          one quick, real protocol round trip; success = ready
#   _env PREFIX    its TXBOX_*_URL line(s) for `env`
# and optionally:
#   _prepare       build or fetch what it runs (run in the background beside the others')
#   _provision     once it answers: users, databases (idempotent)
#   _needs         a server here that must be ready and provisioned before it starts;
#                  a server with this hook is also stopped before the others
#   _server_pid    its pid as the server itself records it, when our pid file lost it
#   _stop_signal   signal for a clean stop (default TERM)
# A server of several processes (ALL_CLUSTERS) manages itself instead: _aliases,
# _packages, _up, _down, _status, _env. Shared primitives are in scripts/services/lib.sh.
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
HOST=127.0.0.1

# In start, status and stop order.
ALL_SERVICES=(postgres mariadb mysql8 redis nats mongodb dynamodb)
ALL_CLUSTERS=(redis-cluster)
# The order `env` has always printed the URLs in.
ENV_ORDER=(postgres mariadb mongodb redis dynamodb nats mysql8)

# shellcheck source=services/lib.sh
. "$ROOT_DIR/scripts/services/lib.sh"
for service_file in "${ALL_SERVICES[@]}" "${ALL_CLUSTERS[@]}"; do
  # shellcheck source=/dev/null
  . "$ROOT_DIR/scripts/services/$service_file.sh"
done
unset service_file

# hook NAME HOOK ARGS...: call NAME's HOOK function.
hook() {
  local fn=${1//-/_}_$2
  shift 2
  "$fn" "$@"
}
has_hook() { declare -F "${1//-/_}_$2" >/dev/null; }

# ------------------------------------------------------------------ names ---

canonical_name() {
  local name=${1,,} s alias aliases
  for s in "${ALL_SERVICES[@]}" "${ALL_CLUSTERS[@]}"; do
    read -ra aliases <<<"$(hook "$s" aliases)"
    for alias in "$s" "${aliases[@]}"; do
      if [ "$name" = "$alias" ]; then
        echo "$s"
        return 0
      fi
    done
  done
  return 1
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

# -------------------------------------------------------------- processes ---

# running_pid NAME: prints the pid and succeeds if NAME's process is alive.
running_pid() {
  local pf pid
  pf=$(pid_file "$1")
  [ -s "$pf" ] || return 1
  pid=$(head -n1 "$pf" 2>/dev/null)
  pid_alive "$pid" "$(hook "$1" process)" || return 1
  echo "$pid"
}

# server_pid NAME: the pid the server itself records, for servers that keep one.
server_pid() { has_hook "$1" server_pid && hook "$1" server_pid; }
# needs_of NAME: the server NAME needs ready before it starts, if any.
needs_of() { if has_hook "$1" needs; then hook "$1" needs; fi; }

# packages_needed NAME...: Debian packages to install for the binaries that are missing.
packages_needed() {
  local s
  for s in "$@"; do hook "$s" packages; done | awk 'NF && !seen[$0]++'
}

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
  port=$(hook "$s" port)
  if pid=$(running_pid "$s"); then
    STARTED_PID=$pid
    return 2
  fi
  if pid=$(server_pid "$s"); then
    echo "$pid" >"$(pid_file "$s")"
    STARTED_PID=$pid
    return 2
  fi
  rm -f "$(pid_file "$s")"
  if tcp_open "$port"; then
    log "$s: port $port is already in use by a process that is not ours ($(ss -ltnpH "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -n1)); stop it or set $(hook "$s" port_var)"
    return 1
  fi
  rotate "$logf"
  printf '=== %s: started by scripts/services.sh at %s ===\n' "$s" "$(date -Is)" >>"$logf"
  STARTED_PID=$(hook "$s" start "$logf") || return 1
  [ -n "$STARTED_PID" ] || return 1
  # postgres/mariadb/redis/nats exec directly, so this is the server's pid
  echo "$STARTED_PID" >"$(pid_file "$s")"
}

provision_one() {
  if has_hook "$1" provision; then hook "$1" provision; fi
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
  if [ "${FRESH[$s]}" = 1 ] && has_hook "$s" server_pid; then
    # record the server's own pid (the one spawned exec'd into it, but be sure)
    hook "$s" server_pid >"$(pid_file "$s")" && PIDS[$s]=$(head -n1 "$(pid_file "$s")")
  fi
  # keep our pid file authoritative even if the server rewrote it
  echo "${PIDS[$s]}" >"$(pid_file "$s")"
  if [ "${FRESH[$s]}" = 1 ]; then
    log "$s: started, ready on $HOST:$(hook "$s" port) in $(since "${T_START[$s]}") (pid ${PIDS[$s]})"
  else
    log "$s: already running on $HOST:$(hook "$s" port) (pid ${PIDS[$s]})"
  fi
}

# signal_one SERVICE: ask it to stop; prints its pid, or nothing if it is not running.
signal_one() {
  local s=$1 pid sig=TERM
  pid=$(running_pid "$s") || pid=$(server_pid "$s") || {
    rm -f "$(pid_file "$s")"
    log "$s: not running"
    return 0
  }
  if has_hook "$s" stop_signal; then sig=$(hook "$s" stop_signal); fi
  kill -s "$sig" "$pid" 2>/dev/null
  echo "$pid"
}

# wait_stopped SERVICE PID [SECONDS]: wait up to SECONDS (60), then SIGKILL.
wait_stopped() {
  local s=$1 pid=$2 max=${3:-60} i pattern
  [ -n "$pid" ] || return 0
  pattern=$(hook "$s" process)
  for ((i = 0; i < max * 5; i++)); do
    pid_alive "$pid" "$pattern" || break
    sleep 0.2
  done
  if pid_alive "$pid" "$pattern"; then
    log "$s: pid $pid still alive after ${max}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
  rm -f "$(pid_file "$s")"
  log "$s: stopped (pid $pid)"
}

# --------------------------------------------------------------- commands ---

cmd_up() {
  parse_names "$@"
  local t_all s dep pkgs=() failed=()
  declare -A PIDS=() T_START=() FRESH=() WAITS_FOR=() PREPARING=()
  t_all=$(now)
  for s in "${SERVICES[@]}"; do
    dep=$(needs_of "$s")
    if [ -n "$dep" ] && [[ " ${SERVICES[*]} " != *" $dep "* ]]; then
      SERVICES=("$dep" "${SERVICES[@]}")
    fi
  done
  take_lock

  # 1. Debian packages, in one apt-get run.
  mapfile -t pkgs < <(packages_needed "${SERVICES[@]}" "${CLUSTERS[@]}")
  if [ ${#pkgs[@]} -gt 0 ]; then
    apt_install "${pkgs[@]}" || die "could not install: ${pkgs[*]}"
  fi

  # 2. Builds and downloads, side by side (the FerretDB Go build is CPU-bound,
  #    DynamoDB Local's Maven resolution network-bound).
  for s in "${SERVICES[@]}"; do
    if has_hook "$s" prepare; then
      hook "$s" prepare &
      PREPARING[$s]=$!
    fi
  done
  for s in "${SERVICES[@]}"; do
    if [ -n "${PREPARING[$s]:-}" ] && ! wait "${PREPARING[$s]}"; then failed+=("$s"); fi
  done

  # 3. Start whatever is not running, without waiting (a server that needs another
  #    waits for it); then 4. poll them all until each answers a real protocol round
  #    trip, or its deadline passes.
  local pending=()
  for s in "${SERVICES[@]}"; do
    [[ " ${failed[*]} " == *" $s "* ]] && continue
    dep=$(needs_of "$s")
    if [ -n "$dep" ]; then
      WAITS_FOR[$s]=$dep   # started once $dep is ready and provisioned
      continue
    fi
    launch "$s" && pending+=("$s")
  done
  while [ ${#pending[@]} -gt 0 ]; do
    local still=() waited next
    for s in "${pending[@]}"; do
      waited=$(awk -v a="${T_START[$s]}" -v b="$(now)" 'BEGIN { printf "%d", b - a }')
      if hook "$s" ping; then
        if provision_one "$s"; then
          ready "$s"
          for next in "${SERVICES[@]}"; do
            if [ "${WAITS_FOR[$next]:-}" = "$s" ]; then
              unset "WAITS_FOR[$next]"
              launch "$next" && still+=("$next")
            fi
          done
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
        log "$s: not ready after ${TIMEOUT}s (port $(hook "$s" port)); see $(log_file "$s")"
        tail_log "$(log_file "$s")"
        failed+=("$s")
      else
        still+=("$s")
      fi
    done
    pending=("${still[@]}")
    [ ${#pending[@]} -gt 0 ] && sleep 0.2
  done
  for s in "${SERVICES[@]}"; do
    [ -n "${WAITS_FOR[$s]:-}" ] && failed+=("$s")   # what it needs never became ready
  done
  for s in "${CLUSTERS[@]}"; do
    hook "$s" up || failed+=("$s")
  done

  if [ ${#failed[@]} -gt 0 ]; then
    log "up: FAILED: ${failed[*]} (logs in $LOG_DIR) — total $(since "$t_all")"
    return 1
  fi
  local everything=("${SERVICES[@]}" "${CLUSTERS[@]}")
  log "up: ${everything[*]} ready in $(since "$t_all")"
}

cmd_down() {
  parse_names "$@"
  take_lock
  local s pid
  declare -A STOPPING=()
  # A server that may use another (FerretDB on PostgreSQL) stops first, then the rest at once.
  for s in "${SERVICES[@]}"; do
    has_hook "$s" needs || continue
    pid=$(signal_one "$s")
    [ -n "$pid" ] && wait_stopped "$s" "$pid"
  done
  for s in "${SERVICES[@]}"; do
    has_hook "$s" needs && continue
    pid=$(signal_one "$s")
    [ -n "$pid" ] && STOPPING[$s]=$pid
  done
  for s in "${SERVICES[@]}"; do
    [ -n "${STOPPING[$s]:-}" ] && wait_stopped "$s" "${STOPPING[$s]}"
  done
  for s in "${CLUSTERS[@]}"; do hook "$s" down; done
  return 0
}

cmd_status() {
  parse_names "$@"
  local s pid state rc=0
  for s in "${SERVICES[@]}"; do
    if pid=$(running_pid "$s") || pid=$(server_pid "$s"); then
      if hook "$s" ping; then
        state=up
      else
        state=down rc=1
        pid="$pid(not answering)"
      fi
    else
      state=down rc=1
      if [ -s "$(pid_file "$s")" ]; then pid="$(head -n1 "$(pid_file "$s")")(stale)"; else pid=-; fi
    fi
    printf '%-9s %-5s port=%-6s pid=%-10s log=%s\n' "$s" "$state" "$(hook "$s" port)" "$pid" "$(log_file "$s")"
  done
  for s in "${CLUSTERS[@]}"; do hook "$s" status || rc=1; done
  return $rc
}

cmd_env() {
  local prefix="" s
  case ${1:-} in
    --export) prefix="export " ;;
    "") ;;
    *) die "usage: $0 env [--export]" ;;
  esac
  for s in "${ENV_ORDER[@]}" "${ALL_CLUSTERS[@]}"; do hook "$s" env "$prefix"; done
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
