# shellcheck shell=bash
# scripts/services/lib.sh — sourced by scripts/services.sh: the primitives that the driver and
# several service files share (logging, process checks, detached start, logs, apt-get). It
# knows no service; it uses the driver's HOST, STATE_DIR, LOG_DIR and RUN_DIR.

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
is_root() { [ "$(id -u)" = 0 ]; }

log_file() { echo "$LOG_DIR/$1.log"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

# pid_alive PID PATTERN: process exists, is not a zombie, and its cmdline matches (guards
# against a pid file that survived a reboot and now names another process).
pid_alive() {
  local pid=$1 pattern=$2 stat cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$pattern"* ]]
}

# pid_exists PID: the process exists and is not a zombie.
pid_exists() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
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
